"""Run Triton kernels in the interpreter on CPU-only machines (must precede the first triton import),
and run the tiny models single-threaded: on the shared 2-core machine two intra-op threads spin
against other processes and make these tests 30x slower."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
