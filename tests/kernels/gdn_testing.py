"""Shared helpers for the GDN kernel tests: seeded inputs with NaN padding, error metric, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from had.kernels import GDNInputs, gated_delta_rule


def rel_rms(a: torch.Tensor, ref: torch.Tensor, floor: float = 1e-2) -> float:
    """RMS(a - ref) / max(RMS(ref), floor), in fp64.

    The floor only matters where the exact answer is ~0 (e.g. dg at T=1 without an initial state,
    where fp32 roundoff of ~1e-7 from q.dq - k.dk is all that is left); there it becomes an
    absolute check (|err| <= 1e-6 at the 1e-4 target).
    """
    a, ref = a.double(), ref.double()
    rms = lambda x: x.pow(2).mean().sqrt()  # noqa: E731
    return (rms(a - ref) / rms(ref).clamp_min(floor)).item()


def make_inputs(B, T, H, K, V, lengths=None, seed=42, dtype=torch.float32, device="cpu", gate="mild") -> GDNInputs:
    """Random inputs; positions >= lengths[b] hold NaN, so any leak of padding shows up."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    g = {"mild": F.logsigmoid(rnd(B, T, H) + 3.0), "strong": -20 * torch.rand(B, T, H, generator=gen),
         "zero": torch.zeros(B, T, H)}[gate]
    parts = [rnd(B, T, H, K), rnd(B, T, H, K), rnd(B, T, H, V), g, torch.rand(B, T, H, generator=gen)]
    out = []
    for x in parts:
        y = torch.empty(x.shape, dtype=dtype, device=device).fill_(float("nan"))
        valid = torch.ones(B, T, dtype=torch.bool) if lengths is None else torch.arange(T)[None] < lengths[:, None]
        y[valid.to(device)] = x[valid].to(dtype=dtype, device=device)
        out.append(y.requires_grad_())
    return GDNInputs(*out)


def grads(outputs, inputs, seed=7):
    """Gradients of sum(out * random cotangent) w.r.t. `inputs` (NaN-free cotangents)."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen).to(o.device)).sum() for o in outputs if o is not None)
    return torch.autograd.grad(loss, [x for x in inputs], allow_unused=False)


def case_grid(chunks=(64,), max_rows=None):
    """Covering set of the issue's grid: every T x (K, V), with H, B, initial state, ragged lengths and
    chunk size cycled so that each value meets many others. `max_rows` caps B*H*T (H drops to 1) to
    keep interpreted-Triton cases cheap. Returns pytest.params (T, K, V, H, B, with_h0, ragged, chunk)."""
    cases = []
    i = 0
    for T in (1, 7, 63, 64, 65, 200):
        for K, V in ((16, 16), (32, 32), (64, 64), (32, 48)):
            H, B = (1, 3)[i % 2], (1, 3)[(i // 2) % 2]
            if max_rows is not None and B * H * T > max_rows:
                H = 1
            h0, ragged, chunk = i % 3 == 0, B == 3 and i % 4 != 1, chunks[i % len(chunks)]
            if chunk * max(K, V) > 2048:  # the Triton backward's shared-memory limit (chunk.MAX_CHUNK_X_DIM)
                chunk = 32
            name = f"T{T}-K{K}-V{V}-H{H}-B{B}" + f"-C{chunk}" * (len(chunks) > 1) + "-h0" * h0 + "-ragged" * ragged
            cases.append(pytest.param(T, K, V, H, B, h0, ragged, chunk, id=name))
            i += 1
    return cases


def lengths_for(B, T, ragged):
    """Ragged lengths (full, half, T-3) or None."""
    return torch.tensor([T, max(1, T // 2), max(1, T - 3)][:B]) if ragged else None


def bidirectional_reference(fwd: GDNInputs, bwd: GDNInputs, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """naive(x) and flip(naive(flip(x))), one sequence at a time, sliced to its real length."""
    o_f, o_b = torch.zeros_like(fwd.v), torch.zeros_like(bwd.v)
    for b, L in enumerate(lengths.tolist()):
        o_f[b, :L] = gated_delta_rule(*(x[b:b + 1, :L] for x in fwd), impl="naive")[0][0]
        o_b[b, :L] = gated_delta_rule(*(x[b:b + 1, :L].flip(1) for x in bwd), impl="naive")[0][0].flip(0)
    return o_f, o_b
