"""AdamW parameter groups: one rule for pretraining (`had train`) and fine-tuning (`had eval`).

Not in had/student/: fine-tuning applies it to every backbone, and importing the student package
loads the GDN kernels (and Triton) that a teacher backbone's evaluation does not need."""
from __future__ import annotations

import torch


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups of `model`'s trainable parameters, in `model.parameters()` order.

    Weight decay on every tensor of 2 or more dims (matmul weights, convolution kernels, embeddings),
    none on vectors (biases, norm scales, the GDN gates' A_log / dt_bias), as nanoGPT's
    configure_optimizers. The rule reads shapes, not names, so it means the same for every backbone
    `had eval` fine-tunes, whatever its library calls its layers.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
