"""Compiled Triton kernels on a GPU: bf16/fp16 accuracy, a realistic length, and a chunk x num_warps sweep.

Skipped without CUDA. Triton 3.4-3.7.0 miscompiles one transposed-dot pattern of this backward on Hopper
(fla #640), so every gradient is checked for every compiled configuration.
"""
import pytest
import torch
from gdn_testing import grads, make_inputs, rel_rms

from had.kernels import bidirectional_gated_delta_rule, gated_delta_rule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
chunk_mod = pytest.importorskip("had.kernels.gated_delta.chunk")
NAMES = "q k v g beta".split()
# fla's own bf16 tolerances (gdn_math.md §4.2) on the same metric
LOW_PRECISION_TOL = dict(o=5e-3, q=8e-3, k=8e-3, v=8e-3, g=2e-2, beta=2e-2)


def _check(out, ref, inputs, tol):
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= tol["o"], f"o: {rel_rms(a, r):.2e}"
    for name, a, r in zip(NAMES * 2, grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= tol[name], f"d{name}: {rel_rms(a, r):.2e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("K,V", [(32, 32), (64, 64)], ids=["d32", "d64"])
def test_low_precision_bidirectional_vs_naive(dtype, K, V):
    """Low-precision inputs, fp32 accumulation, against the fp32 recurrence on the same rounded inputs."""
    B, T, H = 2, 300, 2
    lengths = torch.tensor([300, 157], device="cuda")
    fwd = make_inputs(B, T, H, K, V, lengths.cpu(), seed=1, dtype=dtype, device="cuda")
    bwd = make_inputs(B, T, H, K, V, lengths.cpu(), seed=2, dtype=dtype, device="cuda")
    ref = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths, impl="naive")
    out = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths, impl="triton")
    _check(out, ref, [*fwd, *bwd], LOW_PRECISION_TOL)


@pytest.mark.parametrize("chunk", [16, 32, 64])
@pytest.mark.parametrize("num_warps", [4, 8])
@pytest.mark.parametrize("K,V", [(32, 32), (64, 64)], ids=["d32", "d64"])
def test_fp32_chunk_and_warps_sweep(chunk, num_warps, K, V):
    """Every compiled configuration the benchmark may pick: fp32 (IEEE dots) to 1e-4, all gradients."""
    if chunk * max(K, V) > chunk_mod.MAX_CHUNK_X_DIM:
        pytest.skip("backward needs more shared memory than an H100 has")
    B, T, H = 2, 200, 2
    lengths = torch.tensor([200, 71])
    x = make_inputs(B, T, H, K, V, lengths, device="cuda")
    h0 = torch.randn(B, H, K, V, device="cuda").requires_grad_()
    ref = gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lengths, impl="naive")
    out = chunk_mod.chunk_gated_delta_rule(*x, K**-0.5, h0, lengths.cuda(), chunk_size=chunk, num_warps=num_warps)
    for a, r in zip(out, ref):
        assert rel_rms(a, r) <= 1e-4
    for name, a, r in zip([*NAMES, "h0"], grads(out, [*x, h0]), grads(ref, [*x, h0])):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= 1e-4, f"d{name}: {rel_rms(a, r):.2e}"


def test_student_length_bf16_vs_torch_chunked():
    """T=1024 (the student's window), bf16 Triton against the fp32 chunked PyTorch path."""
    B, T, H, K = 4, 1024, 4, 32
    fwd = make_inputs(B, T, H, K, K, seed=3, dtype=torch.bfloat16, device="cuda")
    bwd = make_inputs(B, T, H, K, K, seed=4, dtype=torch.bfloat16, device="cuda")
    ref = bidirectional_gated_delta_rule(fwd, bwd, impl="torch")
    out = bidirectional_gated_delta_rule(fwd, bwd, impl="triton")
    _check(out, ref, [*fwd, *bwd], LOW_PRECISION_TOL)


def test_auto_picks_triton_on_cuda(monkeypatch):
    called = []
    real = chunk_mod.chunk_gated_delta_rule
    monkeypatch.setattr(chunk_mod, "chunk_gated_delta_rule", lambda *a, **kw: called.append(1) or real(*a, **kw))
    x = make_inputs(1, 20, 1, 16, 16, device="cuda")
    gated_delta_rule(*x)
    assert called
