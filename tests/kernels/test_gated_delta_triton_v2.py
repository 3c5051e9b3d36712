"""v2 Triton kernels (chunk_v2.py; interpreted on CPU via TRITON_INTERPRET=1, compiled on CUDA) against the
naive recurrence: fp32 operands to 1e-4, emulated-bf16 operands at fla's tolerances, and the block-recursive
inverse against torch.linalg.inv. Shapes are tiny: the interpreter is slow.
"""
import pytest
import torch
import triton
import triton.language as tl
from gdn_testing import bidirectional_reference, grads, make_inputs, rel_rms

from had.kernels import GDNInputs, bidirectional_gated_delta_rule, gated_delta_rule

v2 = pytest.importorskip("had.kernels.gated_delta.chunk_v2")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-4
NAMES = "q k v g beta".split()
# fla's own bf16 tolerances (gdn_math.md §4.2), as in test_gated_delta_cuda.py
LOW_PRECISION_TOL = dict(o=5e-3, q=8e-3, k=8e-3, v=8e-3, g=2e-2, beta=2e-2)


@pytest.fixture(autouse=True)
def nan_buffers(monkeypatch):
    """Every buffer the kernels allocate starts as NaN: an element they fail to write (padding) fails the test."""
    real = v2._empty
    monkeypatch.setattr(v2, "_empty", lambda *a, **kw: real(*a, **kw).fill_(float("nan")))


@pytest.mark.parametrize("T,K,V,B,lengths,with_h0,gate", [
    pytest.param(37, 16, 32, 2, [37, 20], True, "mild", id="T37-K16-V32-ragged-h0"),
    pytest.param(16, 32, 32, 1, None, False, "mild", id="T16-K32-V32"),
    pytest.param(1, 16, 16, 2, [1, 1], True, "mild", id="T1-h0"),
    pytest.param(40, 16, 16, 2, [40, 17], True, "strong", id="T40-g-to-minus20-ragged"),
    pytest.param(21, 16, 16, 1, None, False, "zero", id="T21-g-zero"),
])
def test_v2_fp32_matches_naive(T, K, V, B, lengths, with_h0, gate):
    """Causal op with initial and final state: output, final state and every gradient to 1e-4."""
    lengths = None if lengths is None else torch.tensor(lengths)
    x = make_inputs(B, T, 1, K, V, lengths, device=DEVICE, gate=gate)
    h0 = torch.randn(B, 1, K, V, device=DEVICE).requires_grad_() if with_h0 else None
    inputs = [*x] + ([h0] if with_h0 else [])
    lens = None if lengths is None else lengths.to(DEVICE)
    ref = gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lens, impl="naive")
    out = gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lens, impl="triton_v2")
    for name, a, r in zip(("o", "final_state"), out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"{name}: {rel_rms(a, r):.2e}"
    for name, a, r in zip([*NAMES, "h0"], grads(out, inputs), grads(ref, inputs)):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


@pytest.mark.parametrize("B,T,H,K,V,lengths,gate", [
    pytest.param(3, 45, 1, 16, 32, [45, 33, 1], "mild", id="padded-B3-T45"),
    pytest.param(2, 35, 2, 16, 16, [35, 18], "strong", id="padded-B2-T35-H2-strong"),
])
def test_v2_bidirectional_fp32_matches_per_sequence_flips(B, T, H, K, V, lengths, gate):
    lengths = torch.tensor(lengths)
    fwd = make_inputs(B, T, H, K, V, lengths, seed=1, device=DEVICE, gate=gate)
    bwd = make_inputs(B, T, H, K, V, lengths, seed=2, device=DEVICE, gate=gate)
    ref = bidirectional_reference(fwd, bwd, lengths)
    out = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths.to(DEVICE), impl="triton_v2")
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"o: {rel_rms(a, r):.2e}"
    for name, a, r in zip(NAMES * 2, grads(out, [*fwd, *bwd]), grads(ref, [*fwd, *bwd])):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


def _bf16_rounded(x: GDNInputs) -> GDNInputs:
    """q, k, v rounded to bf16 (kept fp32, still leaf tensors); g, beta stay fp32 as in the student."""
    return GDNInputs(*(t.detach().to(torch.bfloat16).float().requires_grad_() if t.dim() == 4 else t for t in x))


def test_v2_emulated_bf16_operands_match_naive_at_fla_tolerances():
    """Every dot operand rounded to bf16 (RTNE), fp32 products: the bf16 kernel's numerics, within fla's
    tolerances of the fp32 recurrence on the same rounded inputs, and measurably not the fp32 path."""
    B, T, H, K, V = 2, 45, 2, 32, 32
    lengths = torch.tensor([45, 29])
    fwd = _bf16_rounded(make_inputs(B, T, H, K, V, lengths, seed=1, device=DEVICE))
    bwd = _bf16_rounded(make_inputs(B, T, H, K, V, lengths, seed=2, device=DEVICE))
    lens = lengths.to(DEVICE)
    ref = bidirectional_gated_delta_rule(fwd, bwd, lengths=lens, impl="naive")
    out = v2.chunk_bidirectional_gated_delta_rule_v2(fwd, bwd, K**-0.5, lens, operands="emulated_bf16")
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and 1e-4 < rel_rms(a, r) <= LOW_PRECISION_TOL["o"], f"o: {rel_rms(a, r):.2e}"
    for name, a, r in zip(NAMES * 2, grads(out, [*fwd, *bwd]), grads(ref, [*fwd, *bwd])):
        assert torch.isfinite(a).all(), name
        assert 1e-4 < rel_rms(a, r) <= LOW_PRECISION_TOL[name], f"d{name}: {rel_rms(a, r):.2e}"


def _conv_views(x: GDNInputs) -> GDNInputs:
    """q, k, v as views of one time-major [B, 3HK, T] buffer, like the student's conv output (K == V)."""
    B, T, H, K = x.q.shape
    packed = torch.stack([x.q, x.k, x.v], 2).detach().reshape(B, T, 3 * H * K).transpose(1, 2).contiguous()
    q, k, v = packed.requires_grad_().transpose(1, 2).view(B, T, 3, H, K).unbind(2)
    return GDNInputs(q, k, v, x.g, x.beta)


def test_v2_strided_inputs_need_no_copy_and_grads_keep_their_layout():
    """q, k, v as the student's conv output views (time stride 1): same numbers as contiguous inputs, and the
    gradients come back in the inputs' dimension order."""
    B, T, H, K = 2, 20, 2, 16
    lengths = torch.tensor([20, 11], device=DEVICE)
    strided = _conv_views(make_inputs(B, T, H, K, K, device=DEVICE))
    dense = GDNInputs(*(t.detach().contiguous().requires_grad_() for t in strided))
    out_s = bidirectional_gated_delta_rule(strided, strided, lengths=lengths, impl="triton_v2")
    out_d = bidirectional_gated_delta_rule(dense, dense, lengths=lengths, impl="triton_v2")
    for a, r in zip(out_s, out_d):
        assert rel_rms(a, r) <= 1e-6
    g_s, g_d = grads(out_s, strided[:3]), grads(out_d, dense[:3])
    for a, r in zip(g_s, g_d):
        assert a.stride(1) == 1 and rel_rms(a, r) <= 1e-6  # time-major like q, k, v


@triton.jit
def _inverse_kernel(l_ptr, a_ptr, BT: tl.constexpr):
    o = tl.arange(0, BT)
    tile = o[:, None] * BT + o[None, :]
    tl.store(a_ptr + tile, v2._unit_lower_inverse(tl.load(l_ptr + tile), BT, 0))


@pytest.mark.parametrize("keys", ["repeated", "near-parallel", "anti-parallel", "random"])
def test_v2_block_inverse_matches_linalg_inv_on_adversarial_keys(keys):
    """(I + L)⁻¹ with L = strictLower(β K Kᵀ), unit keys, β = 1, no decay: the worst conditioning the op sees."""
    C, K = 16, 32
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, K, generator=gen)
    k = {"repeated": base.expand(C, K),
         "near-parallel": base + 1e-3 * torch.randn(C, K, generator=gen),
         "anti-parallel": base * torch.tensor([(-1.0) ** i for i in range(C)])[:, None],
         "random": torch.randn(C, K, generator=gen)}[keys]
    k = torch.nn.functional.normalize(k.double(), dim=-1)
    L = torch.tril(k @ k.T, -1)
    ref = torch.linalg.inv(torch.eye(C, dtype=torch.float64) + L)
    out = torch.empty(C, C, device=DEVICE)
    _inverse_kernel[(1,)](L.float().to(DEVICE), out, BT=C)
    err = (out.cpu().double() - ref).abs().max().item()
    assert err <= 1e-6 * ref.abs().max().item(), f"max error {err:.2e}"


def test_v2_rejects_unknown_operand_mode():
    x = make_inputs(1, 4, 1, 16, 16, device=DEVICE)
    with pytest.raises(ValueError, match="operands='fp8'"):
        v2.chunk_gated_delta_rule_v2(*x, 0.25, operands="fp8")


# Compiled on a GPU: every configuration the benchmark and gpu_kernels_v2.sh time (1 warp; Triton's default
# num_stages and 1; dense and conv-view q/k/v), all gradients, both directions, padded.
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CONFIGS = [pytest.param(st, lay, id=f"s{st or 'default'}-{lay}") for st in (None, 1) for lay in ("dense", "conv")]


def _layout(x: GDNInputs, layout: str) -> GDNInputs:
    return _conv_views(x) if layout == "conv" else x


@cuda_only
@pytest.mark.parametrize("stages,layout", CONFIGS)
def test_v2_cuda_fp32_every_configuration(stages, layout):
    B, T, H, K = 2, 200, 2, 32
    lengths = torch.tensor([200, 71], device="cuda")
    fwd = _layout(make_inputs(B, T, H, K, K, lengths.cpu(), seed=1, device="cuda"), layout)
    bwd = _layout(make_inputs(B, T, H, K, K, lengths.cpu(), seed=2, device="cuda"), layout)
    ref = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths, impl="naive")
    out = v2.chunk_bidirectional_gated_delta_rule_v2(fwd, bwd, K**-0.5, lengths, num_stages=stages)
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"o: {rel_rms(a, r):.2e}"
    for name, a, r in zip(NAMES * 2, grads(out, [*fwd, *bwd]), grads(ref, [*fwd, *bwd])):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


@cuda_only
@pytest.mark.parametrize("stages", [None, 1])
def test_v2_cuda_fp32_initial_and_final_state(stages):
    B, T, H, K = 2, 100, 2, 32
    lengths = torch.tensor([100, 37], device="cuda")
    x = make_inputs(B, T, H, K, K, lengths.cpu(), device="cuda")
    h0 = torch.randn(B, H, K, K, device="cuda").requires_grad_()
    ref = gated_delta_rule(*x, initial_state=h0, output_final_state=True, lengths=lengths, impl="naive")
    out = v2.chunk_gated_delta_rule_v2(*x, K**-0.5, h0, lengths, num_stages=stages)
    for a, r in zip(out, ref):
        assert rel_rms(a, r) <= TOL
    for name, a, r in zip([*NAMES, "h0"], grads(out, [*x, h0]), grads(ref, [*x, h0])):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= TOL, f"d{name}: {rel_rms(a, r):.2e}"


@cuda_only
@pytest.mark.parametrize("stages,layout", CONFIGS)
@pytest.mark.parametrize("T,lengths", [(300, [300, 157]), (1024, [1024, 999])], ids=["T300", "T1024"])
def test_v2_cuda_bf16_every_configuration(stages, layout, T, lengths):
    """bf16 inputs and operands against the fp32 recurrence on the same bf16 inputs, at fla's tolerances."""
    B, H, K = 2, 4, 32
    lengths = torch.tensor(lengths, device="cuda")
    fwd = _layout(make_inputs(B, T, H, K, K, lengths.cpu(), seed=1, dtype=torch.bfloat16, device="cuda"), layout)
    bwd = _layout(make_inputs(B, T, H, K, K, lengths.cpu(), seed=2, dtype=torch.bfloat16, device="cuda"), layout)
    ref = bidirectional_gated_delta_rule(fwd, bwd, lengths=lengths, impl="naive")
    out = v2.chunk_bidirectional_gated_delta_rule_v2(fwd, bwd, K**-0.5, lengths, num_stages=stages)
    for a, r in zip(out, ref):
        assert torch.isfinite(a).all() and rel_rms(a, r) <= LOW_PRECISION_TOL["o"], f"o: {rel_rms(a, r):.2e}"
    for name, a, r in zip(NAMES * 2, grads(out, [*fwd, *bwd]), grads(ref, [*fwd, *bwd])):
        assert torch.isfinite(a).all(), name
        assert rel_rms(a, r) <= LOW_PRECISION_TOL[name], f"d{name}: {rel_rms(a, r):.2e}"
