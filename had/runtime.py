"""Where and in which precision had computes: the one "auto" device rule and bf16 autocast.

Every command resolves its device option here (train.device, eval.device, teacher.device, the
teacher pretraining's device) and autocasts here (training and fine-tuning), so "auto" means the
same thing everywhere.
"""
from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext

import torch

from had.errors import HadError


def resolve_device(option: str, key: str) -> torch.device:
    """auto: the GPU if CUDA sees one, else the CPU; cpu; cuda / cuda:<index>: that GPU, or a HadError
    naming `key` (the option, e.g. "eval.device") when CUDA sees none."""
    if option not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", option):
        raise HadError(f"{key} must be auto, cpu, cuda or cuda:<index>, got {option!r}")
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise HadError(f"{key}={option}: no CUDA device visible")
    return torch.device(option)


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward pass's precision: auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16."""
    if precision not in ("auto", "fp32", "bf16"):
        raise HadError(f"train.precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
