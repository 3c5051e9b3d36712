"""Shared helpers for the GDN kernel tests: seeded inputs with NaN padding, error metric, gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from had.kernels import GDNInputs


def rel_rms(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative RMS error ||a - ref|| / ||ref|| (fp64 arithmetic)."""
    a, ref = a.double(), ref.double()
    return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item()


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
