"""The one "auto" device rule and autocast (had/runtime.py)."""
import pytest
import torch

from had.errors import HadError
from had.runtime import autocast, resolve_device


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "eval.device") == torch.device("cpu")
    assert resolve_device("cpu", "eval.device") == torch.device("cpu")
    for option in ("cuda", "cuda:1"):
        with pytest.raises(HadError, match=f"eval.device={option}: no CUDA device visible"):
            resolve_device(option, "eval.device")
    with pytest.raises(HadError, match="teacher.device must be auto, cpu, cuda or cuda:<index>, got 'gpu'"):
        resolve_device("gpu", "teacher.device")


def test_resolve_device_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device(...) touches no GPU
    assert resolve_device("auto", "x") == torch.device("cuda")
    assert resolve_device("cuda", "x") == torch.device("cuda")
    assert resolve_device("cuda:1", "x") == torch.device("cuda", 1)
    assert resolve_device("cpu", "x") == torch.device("cpu")


def test_autocast_on_cpu():
    a = torch.randn(4, 4)
    cpu = torch.device("cpu")
    for precision, dtype in [("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)]:
        with autocast(precision, cpu):
            assert (a @ a).dtype == dtype, precision
    with pytest.raises(HadError, match="train.precision must be auto, fp32 or bf16, got 'fp16'"):
        autocast("fp16", cpu)
