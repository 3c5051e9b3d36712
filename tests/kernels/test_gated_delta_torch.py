"""Chunked PyTorch path and public API against the token-by-token naive recurrence."""
import pytest
import torch
from gdn_testing import bidirectional_reference, case_grid, grads, lengths_for, make_inputs, rel_rms

from had.kernels import GDNInputs, bidirectional_gated_delta_rule, gated_delta_rule
from had.kernels.gated_delta.chunk_torch import chunk_gated_delta_rule_torch

TOL = 1e-4


def _run(impl, x, h0, lengths, **kw):
    return gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lengths, impl=impl, **kw)


@pytest.mark.parametrize("T,K,V,H,B,with_h0,ragged,chunk", case_grid())
def test_torch_chunked_matches_naive(T, K, V, H, B, with_h0, ragged, chunk):
    lengths = lengths_for(B, T, ragged)
    x = make_inputs(B, T, H, K, V, lengths)
    h0 = torch.randn(B, H, K, V).requires_grad_() if with_h0 else None
    inputs = [*x] + ([h0] if with_h0 else [])
    ref = _run("naive", x, h0, lengths)
    out = _run("torch", x, h0, lengths)
    for name, a, r in zip(("o", "final_state"), out, ref):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= TOL, name
    for name, a, r in zip("q k v g beta h0".split(), grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


@pytest.mark.parametrize("gate", ["strong", "zero"])
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_torch_chunked_gate_extremes(gate, chunk_size):
    """Decays down to exp(-20) per step (would overflow exp(-G)) and exactly-zero log decays."""
    x = make_inputs(2, 100, 2, 16, 16, gate=gate)
    ref, _ = gated_delta_rule(*x, impl="naive")
    out, _ = chunk_gated_delta_rule_torch(*x, scale=0.25, chunk_size=chunk_size)
    assert rel_rms(out, ref) <= TOL
    for a, r in zip(grads([out], x), grads([ref], x)):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL


@pytest.mark.parametrize("use_qk_l2norm", [True, False], ids=["l2norm", "raw-qk"])
def test_torch_chunked_gradcheck_float64(use_qk_l2norm):
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, V = 2, 11, 1, 4, 3
    q, k, v = (torch.randn(B, T, H, d, generator=gen, dtype=torch.float64) for d in (K, K, V))
    if not use_qk_l2norm:  # the solve is only well conditioned for unit-norm keys (gdn_math.md §4.3)
        k = k / k.norm(dim=-1, keepdim=True)
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, generator=gen, dtype=torch.float64))
    beta = torch.rand(B, T, H, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([T, 6])

    def fn(q, k, v, g, beta, h0):
        return chunk_gated_delta_rule_torch(q, k, v, g, beta, 0.5, h0, lengths, use_qk_l2norm, chunk_size=4)

    args = [t.requires_grad_() for t in (q, k, v, g, beta, h0)]
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["torch", "naive"])
def test_bidirectional_matches_per_sequence_flips(impl):
    B, T, H, K, V = 3, 70, 2, 16, 32
    lengths = torch.tensor([70, 33, 1])
    fwd, bwd = make_inputs(B, T, H, K, V, lengths, seed=1), make_inputs(B, T, H, K, V, lengths, seed=2)
    ref = bidirectional_reference(fwd, bwd, lengths)
    out = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths, impl=impl)
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL
    inputs = [*fwd, *bwd]
    for a, r in zip(grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL


def test_auto_on_cpu_uses_torch_path_and_warns_once(monkeypatch):
    import had.kernels.gated_delta.ops as ops

    monkeypatch.setattr(ops, "_warned_fallback", False)
    x = make_inputs(1, 5, 1, 16, 16)
    with pytest.warns(UserWarning, match="chunked PyTorch"):
        o_auto, _ = gated_delta_rule(*x)
    o_torch, _ = gated_delta_rule(*x, impl="torch")
    assert torch.equal(o_auto, o_torch)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gated_delta_rule(*x)


@pytest.mark.parametrize("bad,match", [
    (dict(impl="cuda"), "impl='cuda'"),
    (dict(lengths=torch.tensor([3, 3])), "lengths must be"),
    (dict(initial_state=torch.zeros(1, 1, 16, 8)), "initial_state must be"),
])
def test_caller_errors_name_the_argument(bad, match):
    """Wrong shapes or impl names are programming errors (ValueError); HadConfig checks gdn_impl for users."""
    x = make_inputs(1, 5, 1, 16, 16)
    with pytest.raises(ValueError, match=match):
        gated_delta_rule(*x, **bad)


def test_shape_mismatch_is_a_programming_error():
    x = make_inputs(1, 5, 1, 16, 16)
    with pytest.raises(ValueError, match="beta must be"):
        gated_delta_rule(*GDNInputs(x.q, x.k, x.v, x.g, x.beta[:, :4]), impl="torch")
