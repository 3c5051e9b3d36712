"""Chunked (WY / UT-transform) gated delta rule in plain PyTorch: the CPU training path.

Differentiable by autograd. Per chunk of C tokens (gdn_math.md §2), with G the in-chunk cumulative gate:

    Γ_ri = exp(G_r - G_i) (r >= i, else 0)      A = (I + strictLower(β (K Kᵀ) ⊙ Γ))⁻¹
    U = A (β V)      W = A ((β e^G) K)      N_n = U - W h_n
    O = s [e^G ⊙ (Q h_n) + ((Q Kᵀ) ⊙ Γ) N_n]      h_{n+1} = e^{G_c} h_n + (e^{G_c - G} K)ᵀ N_n

Everything except the short loop over chunks (the state sweep) is batched over all chunks at once.
Decays are only ever formed as exp of a non-positive difference (never exp(-G)), and the upper triangle is
masked *before* the exp so neither the value nor its gradient can overflow.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from had.kernels.gated_delta.naive import compute_dtype, l2norm, valid_mask, zero_padding


def chunk_gated_delta_rule_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    initial_state: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    use_qk_l2norm: bool = True,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `naive_gated_delta_rule` (shapes [B, T, H, K|V], g/beta [B, T, H])."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    C = chunk_size
    out_dtype, dt = q.dtype, compute_dtype(q)
    q, k, v, g, beta = (x.to(dt) for x in (q, k, v, g, beta))
    q, k, v, g, beta = zero_padding(valid_mask(lengths, B, T, q.device), q, k, v, g, beta)
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    NT = max(1, -(-T // C))
    pad = NT * C - T  # identity steps at the end: they change neither the outputs nor the state

    def chunks(x: torch.Tensor) -> torch.Tensor:  # [B, T, H, ...] -> [B, H, NT, C, ...]
        x = x.movedim(2, 1)
        x = F.pad(x, (0, 0, 0, pad)) if x.dim() == 4 else F.pad(x, (0, pad))
        return x.reshape(B, H, NT, C, *x.shape[3:])

    q, k, v, g, beta = (chunks(x) for x in (q, k, v, g, beta))
    G = g.cumsum(-1)  # [B, H, NT, C]
    incl = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    strict = incl.tril(-1)
    Gamma = (G[..., :, None] - G[..., None, :]).masked_fill(~incl, float("-inf")).exp()
    L = (beta[..., None] * (k @ k.transpose(-1, -2)) * Gamma).masked_fill(~strict, 0.0)
    eye = torch.eye(C, dtype=dt, device=q.device)
    A = torch.linalg.solve_triangular(eye + L, eye.expand_as(L), upper=False, unitriangular=True)
    gamma = G.exp()
    U = A @ (beta[..., None] * v)
    W = A @ ((beta * gamma)[..., None] * k)
    lam_k = (G[..., -1:] - G).exp()[..., None] * k
    h = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    states, new_values = [], []
    for n in range(NT):
        N_n = U[:, :, n] - W[:, :, n] @ h
        states.append(h)
        new_values.append(N_n)
        h = gamma[:, :, n, -1, None, None] * h + lam_k[:, :, n].transpose(-1, -2) @ N_n
    h_in, N = torch.stack(states, 2), torch.stack(new_values, 2)
    o = scale * (gamma[..., None] * (q @ h_in) + ((q @ k.transpose(-1, -2)) * Gamma) @ N)
    o = o.reshape(B, H, NT * C, V)[:, :, :T].movedim(1, 2)
    return o.to(out_dtype), h
