"""Run Triton kernels in the interpreter on CPU-only machines.

TRITON_INTERPRET must be set before triton is first imported, hence here and not in a fixture.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
