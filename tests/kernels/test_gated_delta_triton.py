"""Triton kernels (interpreted on CPU via TRITON_INTERPRET=1, compiled on CUDA) against the naive recurrence.

The grid is a covering set (gdn_testing.case_grid): every T, (K, V), H, B, chunk size, initial-state and
ragged choice of the issue appears many times, but not their full product (the interpreter is slow).
"""
import pytest
import torch
from gdn_testing import bidirectional_reference, case_grid, grads, lengths_for, make_inputs, rel_rms

from had.kernels import bidirectional_gated_delta_rule, gated_delta_rule

chunk_mod = pytest.importorskip("had.kernels.gated_delta.chunk")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4


@pytest.fixture(autouse=True)
def nan_buffers(monkeypatch):
    """Fill every buffer the op must write in full with NaN, so an unwritten element fails the test."""
    real = chunk_mod._empty

    def nan_empty(shape, like, dtype=None, zero=False):
        out = real(shape, like, dtype, zero)
        return out if zero else out.fill_(float("nan"))

    monkeypatch.setattr(chunk_mod, "_empty", nan_empty)


@pytest.mark.parametrize("T,K,V,H,B,with_h0,ragged,chunk", case_grid(chunks=(16, 32, 64), max_rows=600))
def test_triton_matches_naive(T, K, V, H, B, with_h0, ragged, chunk):
    lengths = lengths_for(B, T, ragged)
    x = make_inputs(B, T, H, K, V, lengths, device=DEVICE)
    h0 = torch.randn(B, H, K, V, device=DEVICE).requires_grad_() if with_h0 else None
    inputs = [*x] + ([h0] if with_h0 else [])
    ref = gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lengths, impl="naive")
    out = chunk_mod.chunk_gated_delta_rule(*x, K**-0.5, h0, lengths, chunk_size=chunk)
    for name, a, r in zip(("o", "final_state"), out, ref):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= TOL, f"{name}: {rel_rms(a, r):.2e}"
    for name, a, r in zip("q k v g beta h0".split(), grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


@pytest.mark.parametrize("gate", ["strong", "zero"])
def test_triton_gate_extremes(gate):
    """exp(-20) per step (a factored exp(-G) would overflow) and exactly-zero log decays."""
    x = make_inputs(1, 40, 1, 16, 16, gate=gate, device=DEVICE)
    ref, _ = gated_delta_rule(*x, impl="naive")
    out, _ = gated_delta_rule(*x, impl="triton")
    assert rel_rms(out, ref) <= TOL
    for a, r in zip(grads([out], x), grads([ref], x)):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL


@pytest.mark.parametrize("B,T,H,K,V,lengths", [
    pytest.param(3, 70, 1, 16, 32, [70, 33, 1], id="padded-B3-T70"),
    pytest.param(1, 64, 1, 32, 32, [64], id="full-B1-T64"),
])
def test_triton_bidirectional_matches_per_sequence_flips(B, T, H, K, V, lengths):
    lengths = torch.tensor(lengths)
    fwd = make_inputs(B, T, H, K, V, lengths, seed=1, device=DEVICE)
    bwd = make_inputs(B, T, H, K, V, lengths, seed=2, device=DEVICE)
    ref = bidirectional_reference(fwd, bwd, lengths)
    out = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths.to(DEVICE), impl="triton")
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL
    inputs = [*fwd, *bwd]
    for a, r in zip(grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL


def test_chunk_too_large_for_shared_memory_is_a_user_error():
    from had.errors import HadError

    x = make_inputs(1, 8, 1, 64, 64, device=DEVICE)
    with pytest.raises(HadError, match="chunk_size=64"):
        chunk_mod.chunk_gated_delta_rule(*x, 0.125, chunk_size=64)
