"""Run Triton kernels in the interpreter on CPU-only machines; keep torch single-threaded.

TRITON_INTERPRET must be set before triton is first imported, hence here and not in a fixture.
The test tensors are tiny: intra-op threads only spin against other processes on a shared machine.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
torch.set_num_threads(1)
