"""Plain gated-delta-rule recurrence: the oracle every faster path is tested against.

Per batch element and head, with the state stored as fla stores it, `h = Sᵀ ∈ R^{K×V}` (the GDN paper
writes `S ∈ R^{V×K}` and `o_t = S_t q_t`):

    h' = exp(g_t) h_{t-1};   e_t = beta_t (v_t - h'ᵀ k_t);   h_t = h' + k_t e_tᵀ;   o_t = scale · h_tᵀ q_t

Accumulates in fp32 (fp64 for fp64 inputs); one Python step per token, so it is slow but obviously right.
"""
from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp64 stays fp64 (gradcheck); everything else accumulates in fp32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """`x / sqrt(|x|² + eps)` over the last axis (eps keeps all-zero padding rows at zero)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def valid_mask(lengths: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor:
    """bool [B, T]: True at real tokens (t < lengths[b])."""
    if lengths is None:
        return torch.ones(B, T, dtype=torch.bool, device=device)
    return torch.arange(T, device=device)[None, :] < lengths.to(device)[:, None]


def zero_padding(valid: torch.Tensor, q, k, v, g, beta):
    """Turn padded steps into exact identity steps (q = k = v = 0, g = 0, beta = 0).

    `where`, not multiplication, so that NaN padding cannot reach real positions (0 · NaN = NaN).
    """
    q, k, v = (torch.where(valid[..., None, None], x, 0.0) for x in (q, k, v))
    g, beta = (torch.where(valid[..., None], x, 0.0) for x in (g, beta))
    return q, k, v, g, beta


def naive_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float,
    initial_state: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    use_qk_l2norm: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token recurrence.

    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V]; g (log decay <= 0), beta: [B, T, H].
        initial_state: [B, H, K, V] or None (zeros).
        lengths: int [B] real tokens per row (right padding); positions >= length give 0 output
            and leave the state untouched, so padding (even NaN) never leaks.
    Returns:
        o: [B, T, H, V] in q.dtype, final_state: [B, H, K, V] in the accumulation dtype.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    out_dtype, dt = q.dtype, compute_dtype(q)
    q, k, v, g, beta = (x.to(dt) for x in (q, k, v, g, beta))
    valid = valid_mask(lengths, B, T, q.device)
    q, k, v, g, beta = zero_padding(valid, q, k, v, g, beta)
    if use_qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    h = q.new_zeros(B, H, K, V) if initial_state is None else initial_state.to(dt)
    outs = []
    for t in range(T):
        h_dec = h * g[:, t].exp()[..., None, None]
        e = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", h_dec, k[:, t]))
        h_new = h_dec + k[:, t, :, :, None] * e[:, :, None, :]
        keep = valid[:, t, None, None, None]
        h = torch.where(keep, h_new, h)
        o_t = scale * torch.einsum("bhkv,bhk->bhv", h, q[:, t])
        outs.append(torch.where(keep[..., 0], o_t, 0.0))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(B, 0, H, V)
    return o.to(out_dtype), h
