"""Run Triton kernels in the interpreter on CPU-only machines (must precede the first triton import)."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
