"""Paired differences between two models over pretraining seeds, with a bootstrap interval.

The paired unit is the pretraining seed: models A and B pretrained with seed s (same initialisation
seed and data order) give d_s = (A's metric averaged over tasks) - (B's, the same tasks). The
estimate is mean_s d_s; its 95 % interval is the percentile bootstrap over seeds (N_BOOT resamples
of the seeds with replacement, drawn from a fixed generator: the same table gives the same
interval). "A > B holds" only when the interval's lower end is above 0.

    diff = paired_difference({0: 0.61, 1: 0.58, 2: 0.64}, {0: 0.55, 1: 0.57, 2: 0.60})
    diff.mean, diff.low, diff.high, diff.verdict       # 0.0367, 0.01, 0.06, "holds"
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95


@dataclass
class PairedDiff:
    """mean over seeds of A - B, its bootstrap interval [low, high], and the per-seed differences."""

    mean: float
    low: float
    high: float
    seeds: list[int]
    diffs: list[float]

    @property
    def verdict(self) -> str:
        if len(self.seeds) < 2:
            return "undetermined (fewer than 2 paired seeds)"
        if self.low > 0:
            return "holds"
        return "reversed (interval below 0)" if self.high < 0 else "does not hold (interval includes 0)"


def task_means(scores: dict[int, dict[str, float]]) -> dict[int, float]:
    """{seed: {task: metric}} -> {seed: mean over its tasks}."""
    return {s: float(np.mean(list(tasks.values()))) for s, tasks in scores.items()}


def paired_difference(a: dict[int, float], b: dict[int, float], n_boot: int = N_BOOT, seed: int = 0) -> PairedDiff:
    """A - B over the seeds both have ({seed: score} each): mean and percentile bootstrap interval."""
    seeds = sorted(a.keys() & b.keys())
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    if d.size == 0:
        return PairedDiff(float("nan"), float("nan"), float("nan"), [], [])
    resampled = d[np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return PairedDiff(float(d.mean()), float(low), float(high), seeds, d.tolist())
