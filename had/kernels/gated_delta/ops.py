"""Public gated-delta-rule ops: argument checks and dispatch between the three implementations.

    impl="auto"   -> Triton on CUDA tensors, chunked PyTorch elsewhere (warns once)
    impl="triton" -> had.kernels.gated_delta.chunk (CUDA, or CPU under TRITON_INTERPRET=1)
    impl="triton_v2" -> had.kernels.gated_delta.chunk_v2 (same; opt-in until a GPU run has verified it)
    impl="torch"  -> had.kernels.gated_delta.chunk_torch
    impl="naive"  -> had.kernels.gated_delta.naive (the token-by-token oracle)
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch

from had.errors import HadError
from had.kernels.gated_delta.chunk_torch import chunk_gated_delta_rule_torch
from had.kernels.gated_delta.naive import naive_gated_delta_rule

IMPLS = ("auto", "triton", "triton_v2", "torch", "naive")
_warned_fallback = False


class GDNInputs(NamedTuple):
    """One direction's inputs: q, k [B, T, H, K]; v [B, T, H, V]; g (log decay <= 0), beta [B, T, H]."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor
    beta: torch.Tensor


def _check(x: GDNInputs, lengths: torch.Tensor | None, initial_state: torch.Tensor | None, where: str) -> None:
    """ValueError for a wrong shape: the calling code's bug, not something a user of `had` sets."""
    if x.q.dim() != 4:
        raise ValueError(f"{where}: q must be [B, T, H, K], got shape {tuple(x.q.shape)}")
    B, T, H, K = x.q.shape
    if x.k.shape != x.q.shape:
        raise ValueError(f"{where}: k shape {tuple(x.k.shape)} != q shape {tuple(x.q.shape)}")
    if x.v.dim() != 4 or x.v.shape[:3] != (B, T, H):
        raise ValueError(f"{where}: v must be [B, T, H, V] = [{B}, {T}, {H}, V], got {tuple(x.v.shape)}")
    for name in ("g", "beta"):
        if getattr(x, name).shape != (B, T, H):
            raise ValueError(f"{where}: {name} must be [B, T, H] = [{B}, {T}, {H}], got {tuple(getattr(x, name).shape)}")
    if lengths is not None and lengths.shape != (B,):
        raise ValueError(f"{where}: lengths must be [B] = [{B}], got {tuple(lengths.shape)}")
    V = x.v.shape[-1]
    if initial_state is not None and initial_state.shape != (B, H, K, V):
        raise ValueError(f"{where}: initial_state must be [B, H, K, V] = [{B}, {H}, {K}, {V}], "
                       f"got {tuple(initial_state.shape)}")


def _resolve(impl: str, x: torch.Tensor, where: str) -> str:
    global _warned_fallback
    if impl not in IMPLS:
        raise ValueError(f"{where}: impl={impl!r} is not one of {', '.join(IMPLS)}")
    if impl.startswith("triton") and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise HadError(f"{where}: impl={impl!r} needs CUDA tensors (or TRITON_INTERPRET=1); use impl='torch' on CPU")
    if impl != "auto":
        return impl
    if x.is_cuda:
        return "triton"
    if not _warned_fallback:
        warnings.warn("GDN: tensors are not on CUDA, using the chunked PyTorch path (slower than Triton)", stacklevel=3)
        _warned_fallback = True
    return "torch"


def _reverse_index(lengths: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor:
    """long [B, T]: position t of the reversed row reads lengths[b]-1-t; padding maps to itself."""
    t = torch.arange(T, device=device).expand(B, T)
    if lengths is None:
        return T - 1 - t
    L = lengths.to(device=device, dtype=torch.long)[:, None]
    return torch.where(t < L, L - 1 - t, t)


def _gather_time(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    lengths: torch.Tensor | None = None,
    use_qk_l2norm: bool = True,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Causal gated delta rule.

    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V]; g: [B, T, H] log decay (<= 0); beta: [B, T, H] in (0, 1).
        scale: multiplies q; default K ** -0.5.
        initial_state: [B, H, K, V] (fp32 recommended) or None.
        lengths: int [B] real tokens per row (right padding, 0 <= lengths <= T); padded positions
            output 0 and never touch the state.
        use_qk_l2norm: L2-normalise q and k inside the op (differentiable).
        impl: "auto" | "triton" | "triton_v2" | "torch" | "naive".
    Returns:
        o: [B, T, H, V] in q's dtype; final state [B, H, K, V] (fp32) if output_final_state else None.

    Example:
        >>> B, T, H, K = 2, 100, 4, 32
        >>> q, k, v = (torch.randn(B, T, H, K) for _ in range(3))
        >>> g = torch.nn.functional.logsigmoid(torch.randn(B, T, H)); beta = torch.rand(B, T, H)
        >>> o, _ = gated_delta_rule(q, k, v, g, beta, lengths=torch.tensor([100, 60]), impl="torch")
    """
    x = GDNInputs(q, k, v, g, beta)
    _check(x, lengths, initial_state, "gated_delta_rule")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    impl = _resolve(impl, q, "gated_delta_rule")
    if impl == "triton":
        from had.kernels.gated_delta.chunk import chunk_gated_delta_rule

        o, final = chunk_gated_delta_rule(*x, scale, initial_state, lengths, use_qk_l2norm)
    elif impl == "triton_v2":
        from had.kernels.gated_delta.chunk_v2 import chunk_gated_delta_rule_v2

        o, final = chunk_gated_delta_rule_v2(*x, scale, initial_state, lengths, use_qk_l2norm)
    else:
        fn = naive_gated_delta_rule if impl == "naive" else chunk_gated_delta_rule_torch
        o, final = fn(*x, scale, initial_state, lengths, use_qk_l2norm)
    return o, (final if output_final_state else None)


def bidirectional_gated_delta_rule(
    fwd: GDNInputs,
    bwd: GDNInputs,
    lengths: torch.Tensor | None = None,
    scale: float | None = None,
    use_qk_l2norm: bool = True,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions of a bidirectional gated delta rule.

    `fwd` runs left to right. `bwd` (its own q, k, v, g, beta, given in input order) runs over each row
    from lengths[b]-1 down to 0; `o_bwd[b, t]` is aligned with input position t, so the caller never
    flips anything. On Triton both directions run in one launch per pass.

    Returns:
        (o_fwd, o_bwd): each [B, T, H, V], zero at padded positions.
    """
    fwd, bwd = GDNInputs(*fwd), GDNInputs(*bwd)
    _check(fwd, lengths, None, "bidirectional_gated_delta_rule(fwd)")
    _check(bwd, lengths, None, "bidirectional_gated_delta_rule(bwd)")
    if fwd.q.shape != bwd.q.shape or fwd.v.shape != bwd.v.shape:
        raise ValueError("bidirectional_gated_delta_rule: fwd and bwd inputs must have the same shapes")
    scale = fwd.q.shape[-1] ** -0.5 if scale is None else scale
    impl = _resolve(impl, fwd.q, "bidirectional_gated_delta_rule")
    if impl == "triton":
        from had.kernels.gated_delta.chunk import chunk_bidirectional_gated_delta_rule

        return chunk_bidirectional_gated_delta_rule(fwd, bwd, scale, lengths, use_qk_l2norm)
    if impl == "triton_v2":
        from had.kernels.gated_delta.chunk_v2 import chunk_bidirectional_gated_delta_rule_v2

        return chunk_bidirectional_gated_delta_rule_v2(fwd, bwd, scale, lengths, use_qk_l2norm)
    fn = naive_gated_delta_rule if impl == "naive" else chunk_gated_delta_rule_torch
    B, T = fwd.q.shape[:2]
    idx = _reverse_index(lengths, B, T, fwd.q.device)
    o_f, _ = fn(*fwd, scale, None, lengths, use_qk_l2norm)
    o_b, _ = fn(*(_gather_time(x, idx) for x in bwd), scale, None, lengths, use_qk_l2norm)
    return o_f, _gather_time(o_b, idx)
