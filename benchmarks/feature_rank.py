"""How collapsed the probe's features are: effective rank of every model of a `had experiment` run.

    PYTHONPATH=. python benchmarks/feature_rank.py runs/science-syn23 --seeds 0 1 --tasks repeat_family enhancers

For each model (the teacher, and every student variant at each pretraining seed asked for) and each
task: the probe's own features (`had.evaluation.probe.task_features`: last hidden states mean-pooled
over real tokens) of the task's training rows, centred, and their effective rank (Σσ)² / Σσ² over the
singular values σ: 1 when every sequence maps onto one direction, the width when variance is spread
evenly. Reads the run's tasks (`data/tasks`, NT layout) and models; writes nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from had.data.benchmarks import discover_tasks, load_task
from had.evaluation.backbones import load_backbone
from had.evaluation.finetune import Protocol, prepare
from had.evaluation.probe import task_features


def effective_rank(x: np.ndarray) -> float:
    """(Σσ)² / Σσ² of the centred rows of x [N, D]."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    return float(s.sum() ** 2 / (s ** 2).sum())


def models(run: Path, seeds: list[int]) -> dict[str, Path]:
    found = {"teacher": run / "teacher"}
    for variant in sorted(p.name for p in (run / "students").iterdir() if p.is_dir()):
        for s in seeds:
            found[f"{variant} seed{s}"] = run / "students" / variant / f"seed{s}" / "model"
    return {name: path for name, path in found.items() if path.is_dir()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `had experiment --data synthetic` output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="pretraining seeds of the students")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every task of the run")
    args = parser.parse_args()
    root = args.run / "data" / "tasks"
    tasks = [load_task("nt", root, name) for name in args.tasks or discover_tasks("nt", root)]
    protocol = Protocol(epochs=0, kind="probe")
    print("| model | " + " | ".join(t.name for t in tasks) + " |\n|---|" + "---|" * len(tasks))
    for name, path in models(args.run, args.seeds).items():
        backbone = load_backbone(str(path))
        ranks = [effective_rank(task_features(backbone, prepare(t, backbone, protocol), 64, torch.device("cpu")).train.x)
                 for t in tasks]
        print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in ranks) + " |", flush=True)


if __name__ == "__main__":
    main()
