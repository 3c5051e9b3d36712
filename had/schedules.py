"""The learning-rate schedule every training loop here uses (student pretraining, teacher pretraining,
fine-tuning): linear warmup, then cosine decay to 0."""
from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LambdaLR factor: linear warmup from 1/warmup to 1 over round(warmup_fraction · total_steps)
    steps (at least 1), then cosine from 1 to 0 at total_steps (held at 0 beyond)."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
