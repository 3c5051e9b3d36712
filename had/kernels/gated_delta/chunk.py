"""Triton chunked gated delta rule: fused forward and backward, one or two directions per launch.

One program owns one (sequence, head, direction) and walks that sequence's chunks with the fp32 state
[K, V] in registers; the WY intermediates (A, W, U, N) never leave the chip. The reverse direction reads
row b from lengths[b]-1 down to 0 through index arithmetic (no flipped copies), and writes its outputs
and gradients through the same map, so o_bwd[b, t] is aligned with input position t.

The backward recomputes everything from q, k, v, g, beta: a forward sweep stores the state entering each
chunk in a per-program fp32 workspace (mostly L2-resident), then a reverse sweep applies gdn_math.md §3.

Transposes of `tl.dot` results feeding another `tl.dot` are avoided (Triton 3.4-3.7.0 miscompiles that on
Hopper, fla #640): the transposed operands are rebuilt from loaded tensors, and the two that cannot be
(the state adjoint dh and the inverse's adjoint E) are transposed through the workspace.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from had.errors import HadError

DEFAULT_CHUNK = 16  # measured on an H100 at the student shape: 2.84 / 19.8 ms vs 4.57 / 30.1 at 32
DEFAULT_WARPS = 4
# chunk x max(K, V) above this needs more shared memory in the backward than an H100 has (64 x 64: 256 KiB)
MAX_CHUNK_X_DIM = 2048
L2_EPS = 1e-6  # same eps as naive.l2norm


@triton.jit
def _unit_lower_inverse(b_L, BT: tl.constexpr):
    """(I + L)⁻¹ for strictly lower-triangular L [BT, BT] by forward substitution (bounded entries)."""
    o = tl.arange(0, BT)
    b_A = tl.where(o[:, None] == o[None, :], 1.0, 0.0)
    for i in range(1, BT):
        b_l = tl.sum(tl.where(o[:, None] == i, b_L, 0.0), 0)  # row i of L, indexed by column j
        b_a = tl.sum(b_l[:, None] * b_A, 0)  # sum_j L_ij A_j (rows j < i are final)
        b_A = tl.where(o[:, None] == i, tl.where(o == i, 1.0, 0.0)[None, :] - b_a[None, :], b_A)
    return b_A


@triton.jit
def _chunk_rows(c, seq_len, b, h, T, H, REVERSE, BT: tl.constexpr):
    """Token-head row index (int64) of each chunk position and its validity.

    Position p of this direction's sequence is input token p (forward) or seq_len-1-p (reverse).
    """
    p = c * BT + tl.arange(0, BT)
    valid = p < seq_len
    t = tl.where(REVERSE, seq_len - 1 - p, p)
    t = tl.where(valid, t, 0)
    return (b.to(tl.int64) * T + t) * H + h, valid


@triton.jit
def _load_chunk(q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, rows, valid,
                K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                USE_L2: tl.constexpr, EPS: tl.constexpr):
    """Loads one chunk in fp32 (padding rows as exact identity steps) and L2-normalises q, k.

    Returns q, k [BT, BK] (normalised), v [BT, BV], g, beta [BT], and rq, rk [BT] (inverse norms).
    """
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    mk = valid[:, None] & (kk < K)[None, :]
    mv = valid[:, None] & (vv < V)[None, :]
    b_q = tl.load(q_ptr + rows[:, None] * K + kk[None, :], mask=mk, other=0.0).to(tl.float32)
    b_k = tl.load(k_ptr + rows[:, None] * K + kk[None, :], mask=mk, other=0.0).to(tl.float32)
    b_v = tl.load(v_ptr + rows[:, None] * V + vv[None, :], mask=mv, other=0.0).to(tl.float32)
    b_g = tl.load(g_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    b_beta = tl.load(beta_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    b_rq = tl.full(b_g.shape, 1.0, tl.float32)
    b_rk = b_rq
    if USE_L2:
        b_rq = tl.rsqrt(tl.sum(b_q * b_q, 1) + EPS)
        b_rk = tl.rsqrt(tl.sum(b_k * b_k, 1) + EPS)
        b_q = b_q * b_rq[:, None]
        b_k = b_k * b_rk[:, None]
    return b_q, b_k, b_v, b_g, b_beta, b_rq, b_rk


@triton.jit
def _wy(b_k, b_v, b_g, b_beta, BT: tl.constexpr, PREC: tl.constexpr):
    """In-chunk cumulative gate and the WY/UT transform (gdn_math.md §2.1).

    Returns G, Γ [BT, BT] (0 above the diagonal), K Kᵀ, L, A = (I + L)⁻¹, and the right-hand sides
    Xw = (β e^G) K, Xu = β V, with W = A Xw and U = A Xu.
    """
    o = tl.arange(0, BT)
    b_G = tl.cumsum(b_g, 0)
    # mask the exponent, not the result: exp of the upper triangle could overflow to inf
    b_Gam = tl.exp(tl.where(o[:, None] >= o[None, :], b_G[:, None] - b_G[None, :], float("-inf")))
    b_kk = tl.dot(b_k, tl.trans(b_k), input_precision=PREC)
    b_L = tl.where(o[:, None] > o[None, :], b_beta[:, None] * b_kk * b_Gam, 0.0)
    b_A = _unit_lower_inverse(b_L, BT)
    b_xw = b_k * (b_beta * tl.exp(b_G))[:, None]
    b_xu = b_v * b_beta[:, None]
    return b_G, b_Gam, b_kk, b_L, b_A, b_xw, b_xu


@triton.jit
def gdn_fwd_kernel(
    q0, k0, v0, g0, beta0, o0,
    q1, k1, v1, g1, beta1, o1,
    h0_ptr, ht_ptr, lengths_ptr, scale, T, H,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    USE_L2: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, PREC: tl.constexpr, EPS: tl.constexpr,
):
    """Grid (B*H, n_directions). Direction 1 (if launched) runs each sequence backwards."""
    bh = tl.program_id(0)
    d = tl.program_id(1)
    b = bh // H
    h = bh % H
    if d == 0:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, o_ptr = q0, k0, v0, g0, beta0, o0
    else:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, o_ptr = q1, k1, v1, g1, beta1, o1
    seq_len = tl.load(lengths_ptr + b)
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    m_kv = (kk < K)[:, None] & (vv < V)[None, :]
    state_off = bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h = tl.load(h0_ptr + state_off, mask=m_kv, other=0.0).to(tl.float32)
    for c in range(0, tl.cdiv(seq_len, BT)):
        rows, valid = _chunk_rows(c, seq_len, b, h, T, H, d == 1, BT)
        b_q, b_k, b_v, b_g, b_beta, _, _ = _load_chunk(q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, rows, valid,
                                                       K, V, BK, BV, USE_L2, EPS)
        b_G, b_Gam, _, _, b_A, b_xw, b_xu = _wy(b_k, b_v, b_g, b_beta, BT, PREC)
        b_w = tl.dot(b_A, b_xw, input_precision=PREC)
        b_n = tl.dot(b_A, b_xu, input_precision=PREC) - tl.dot(b_w, b_h, input_precision=PREC)
        b_s = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_Gam
        b_o = tl.exp(b_G)[:, None] * tl.dot(b_q, b_h, input_precision=PREC)
        b_o = scale * (b_o + tl.dot(b_s, b_n, input_precision=PREC))
        tl.store(o_ptr + rows[:, None] * V + vv[None, :], b_o.to(o_ptr.dtype.element_ty),
                 mask=valid[:, None] & (vv < V)[None, :])
        b_glast = tl.sum(b_g, 0)  # padding rows have g = 0, so this is G at the last real row
        b_lk = b_k * tl.exp(b_glast - b_G)[:, None]
        b_h = tl.exp(b_glast) * b_h + tl.dot(tl.trans(b_lk), b_n, input_precision=PREC)
    if STORE_HT:
        tl.store(ht_ptr + state_off, b_h, mask=m_kv)


@triton.jit
def gdn_bwd_kernel(
    q0, k0, v0, g0, beta0, do0, dq0, dk0, dv0, dg0, dbeta0,
    q1, k1, v1, g1, beta1, do1, dq1, dk1, dv1, dg1, dbeta1,
    h0_ptr, dht_ptr, dh0_ptr, ws_ptr, lengths_ptr, scale, T, H, NT_MAX,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    USE_L2: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr, PREC: tl.constexpr, EPS: tl.constexpr,
):
    """Grid (B*H, n_directions). Workspace per program: NT_MAX states [BK, BV], dh [BK, BV], E [BT, BT]."""
    bh = tl.program_id(0)
    d = tl.program_id(1)
    b = bh // H
    h = bh % H
    if d == 0:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, do_ptr = q0, k0, v0, g0, beta0, do0
        dq_ptr, dk_ptr, dv_ptr, dg_ptr, dbeta_ptr = dq0, dk0, dv0, dg0, dbeta0
    else:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, do_ptr = q1, k1, v1, g1, beta1, do1
        dq_ptr, dk_ptr, dv_ptr, dg_ptr, dbeta_ptr = dq1, dk1, dv1, dg1, dbeta1
    seq_len = tl.load(lengths_ptr + b)
    n_chunks = tl.cdiv(seq_len, BT)
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    o = tl.arange(0, BT)
    m_kv = (kk < K)[:, None] & (vv < V)[None, :]
    state_off = bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :]
    tile = kk[:, None] * BV + vv[None, :]
    ws = ws_ptr + (d * tl.num_programs(0) + bh).to(tl.int64) * (NT_MAX * BK * BV + BK * BV + BT * BT)
    ws_dh = ws + NT_MAX * BK * BV
    ws_e = ws_dh + BK * BV

    # Pass 1: recompute the state entering every chunk.
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h = tl.load(h0_ptr + state_off, mask=m_kv, other=0.0).to(tl.float32)
    for c in range(0, n_chunks):
        tl.store(ws + c * BK * BV + tile, b_h)
        rows, valid = _chunk_rows(c, seq_len, b, h, T, H, d == 1, BT)
        _, b_k, b_v, b_g, b_beta, _, _ = _load_chunk(q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, rows, valid,
                                                     K, V, BK, BV, USE_L2, EPS)
        b_G, _, _, _, b_A, b_xw, b_xu = _wy(b_k, b_v, b_g, b_beta, BT, PREC)
        b_n = tl.dot(b_A, b_xu, input_precision=PREC) - tl.dot(tl.dot(b_A, b_xw, input_precision=PREC), b_h,
                                                               input_precision=PREC)
        b_glast = tl.sum(b_g, 0)
        b_lk = b_k * tl.exp(b_glast - b_G)[:, None]
        b_h = tl.exp(b_glast) * b_h + tl.dot(tl.trans(b_lk), b_n, input_precision=PREC)
    tl.debug_barrier()

    # Pass 2: reverse sweep carrying dh = dLoss/d(state leaving the chunk).
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh = tl.load(dht_ptr + state_off, mask=m_kv, other=0.0).to(tl.float32)
    strict = o[:, None] > o[None, :]
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        rows, valid = _chunk_rows(c, seq_len, b, h, T, H, d == 1, BT)
        b_q, b_k, b_v, b_g, b_beta, b_rq, b_rk = _load_chunk(q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, rows, valid,
                                                             K, V, BK, BV, USE_L2, EPS)
        b_G, b_Gam, b_kk, b_L, b_A, b_xw, b_xu = _wy(b_k, b_v, b_g, b_beta, BT, PREC)
        b_h = tl.load(ws + c * BK * BV + tile)
        tl.store(ws_dh + tile, b_dh)
        tl.debug_barrier()
        b_dhT = tl.load(ws_dh + kk[None, :] * BV + vv[:, None])  # [BV, BK]
        b_do = tl.load(do_ptr + rows[:, None] * V + vv[None, :], mask=valid[:, None] & (vv < V)[None, :],
                       other=0.0).to(tl.float32)
        b_gamma = tl.exp(b_G)
        b_glast = tl.sum(b_g, 0)
        b_lam = tl.exp(b_glast - b_G)
        b_GamT = tl.exp(tl.where(o[:, None] <= o[None, :], b_G[None, :] - b_G[:, None], float("-inf")))
        b_At = tl.trans(b_A)
        b_n = tl.dot(b_A, b_xu, input_precision=PREC) - tl.dot(tl.dot(b_A, b_xw, input_precision=PREC), b_h,
                                                               input_precision=PREC)
        # Nᵀ = (Xuᵀ - hᵀ Xwᵀ) Aᵀ, built from loaded operands rather than by transposing N
        b_nT = tl.dot(tl.trans(b_xu) - tl.dot(tl.trans(b_h), tl.trans(b_xw), input_precision=PREC), b_At,
                      input_precision=PREC)
        b_sT = tl.dot(b_k, tl.trans(b_q), input_precision=PREC) * b_GamT
        b_dn = scale * tl.dot(b_sT, b_do, input_precision=PREC)
        b_dn += tl.dot(b_k * b_lam[:, None], b_dh, input_precision=PREC)
        b_p = tl.dot(b_do, b_nT, input_precision=PREC) * b_Gam
        b_pT = tl.dot(b_n, tl.trans(b_do), input_precision=PREC) * b_GamT
        b_dq = scale * (b_gamma[:, None] * tl.dot(b_do, tl.trans(b_h), input_precision=PREC)
                        + tl.dot(b_p, b_k, input_precision=PREC))
        b_dk_o = scale * tl.dot(b_pT, b_q, input_precision=PREC)
        b_dk_h = b_lam[:, None] * tl.dot(b_n, b_dhT, input_precision=PREC)
        b_dw = -tl.dot(b_dn, tl.trans(b_h), input_precision=PREC)
        b_da = tl.dot(b_dw, tl.trans(b_xw), input_precision=PREC) + tl.dot(b_dn, tl.trans(b_xu),
                                                                          input_precision=PREC)
        b_dxw = tl.dot(b_At, b_dw, input_precision=PREC)
        b_dxu = tl.dot(b_At, b_dn, input_precision=PREC)
        b_dl = -tl.dot(tl.dot(b_At, b_da, input_precision=PREC), b_At, input_precision=PREC)
        b_dl = tl.where(strict, b_dl, 0.0)
        b_e = b_dl * b_Gam
        tl.store(ws_e + o[:, None] * BT + o[None, :], b_e)
        tl.debug_barrier()
        b_eT = tl.load(ws_e + o[None, :] * BT + o[:, None])
        b_dk = b_dk_o + b_dk_h + (b_beta * b_gamma)[:, None] * b_dxw
        b_dk += b_beta[:, None] * tl.dot(b_e, b_k, input_precision=PREC)
        b_dk += tl.dot(b_eT, b_k * b_beta[:, None], input_precision=PREC)
        b_dv = b_beta[:, None] * b_dxu
        b_dbeta = b_gamma * tl.sum(b_dxw * b_k, 1) + tl.sum(b_dxu * b_v, 1) + tl.sum(b_e * b_kk, 1)
        b_dll = b_dl * b_L
        b_dG = tl.sum(b_dq * b_q, 1) - tl.sum((b_dk_o + b_dk_h) * b_k, 1) + tl.sum(b_dxw * b_xw, 1)
        b_dG += tl.sum(b_dll, 1) - tl.sum(b_dll, 0)
        # the chunk's total decay e^{G_last} is seen by later chunks through h and lambda
        b_dglast = tl.exp(b_glast) * tl.sum(tl.sum(b_h * b_dh, 1), 0) + tl.sum(tl.sum(b_dk_h * b_k, 1), 0)
        b_dG += tl.where(o == BT - 1, b_dglast, 0.0)
        b_dg = tl.cumsum(b_dG, 0, reverse=True)
        b_dh = tl.exp(b_glast) * b_dh + scale * tl.dot(tl.trans(b_q * b_gamma[:, None]), b_do, input_precision=PREC)
        b_dh -= tl.dot(tl.trans(b_xw), b_dxu, input_precision=PREC)
        if USE_L2:  # d x = r (dy - y <y, dy>) with y = x r
            b_dq = b_rq[:, None] * (b_dq - b_q * tl.sum(b_q * b_dq, 1)[:, None])
            b_dk = b_rk[:, None] * (b_dk - b_k * tl.sum(b_k * b_dk, 1)[:, None])
        kk_mask = valid[:, None] & (kk < K)[None, :]
        tl.store(dq_ptr + rows[:, None] * K + kk[None, :], b_dq.to(dq_ptr.dtype.element_ty), mask=kk_mask)
        tl.store(dk_ptr + rows[:, None] * K + kk[None, :], b_dk.to(dk_ptr.dtype.element_ty), mask=kk_mask)
        tl.store(dv_ptr + rows[:, None] * V + vv[None, :], b_dv.to(dv_ptr.dtype.element_ty),
                 mask=valid[:, None] & (vv < V)[None, :])
        tl.store(dg_ptr + rows, b_dg.to(dg_ptr.dtype.element_ty), mask=valid)
        tl.store(dbeta_ptr + rows, b_dbeta.to(dbeta_ptr.dtype.element_ty), mask=valid)
        tl.debug_barrier()
    if HAS_H0:
        tl.store(dh0_ptr + state_off, b_dh, mask=m_kv)


def _empty(shape, like: torch.Tensor, dtype: torch.dtype | None = None, zero: bool = False) -> torch.Tensor:
    """Output buffer; zeroed where padding positions are never written. Tests patch this to fill NaN."""
    make = torch.zeros if zero else torch.empty
    return make(shape, dtype=dtype or like.dtype, device=like.device)


def _meta(x: torch.Tensor, v: torch.Tensor, chunk_size: int | None) -> dict:
    """Chunk size, and IEEE fp32 dots for fp32 inputs (the 1e-4 target) or TF32 for bf16/fp16 inputs."""
    dim = max(x.shape[-1], v.shape[-1], 16)
    if chunk_size is None:
        chunk_size = min(DEFAULT_CHUNK, MAX_CHUNK_X_DIM // triton.next_power_of_2(dim))
    if chunk_size not in (16, 32, 64) or chunk_size * triton.next_power_of_2(dim) > MAX_CHUNK_X_DIM:
        raise HadError(f"GDN Triton: chunk_size={chunk_size} must be 16, 32 or 64 with chunk_size x max(K, V) "
                       f"<= {MAX_CHUNK_X_DIM} (K, V = {x.shape[-1]}, {v.shape[-1]})")
    return dict(BT=chunk_size, PREC="ieee" if x.dtype in (torch.float32, torch.float64) else "tf32",
                EPS=L2_EPS)


class _ChunkGDN(torch.autograd.Function):
    """Autograd over one launch per pass for 1 or 2 directions (inputs flattened as 5 per direction)."""

    @staticmethod
    def forward(ctx, lengths, scale, use_l2, h0, store_ht, chunk_size, num_warps, *xs):
        ndir = len(xs) // 5
        xs = tuple(x.contiguous() for x in xs)
        q, v = xs[0], xs[2]
        B, T, H, K = q.shape
        V = v.shape[-1]
        padded = lengths is not None
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int32, device=q.device)
        lengths = lengths.to(device=q.device, dtype=torch.int32).contiguous()
        os_ = [_empty(xs[5 * d + 2].shape, xs[5 * d], zero=padded) for d in range(ndir)]
        ht = _empty((B, H, K, V), q, torch.float32) if store_ht else None
        meta = _meta(q, v, chunk_size)
        per_dir = [(*xs[5 * d: 5 * d + 5], os_[d]) for d in range(ndir)]
        gdn_fwd_kernel[(B * H, ndir)](
            *per_dir[0], *per_dir[-1], h0, ht, lengths, scale, T, H,
            K=K, V=V, BK=max(16, triton.next_power_of_2(K)), BV=max(16, triton.next_power_of_2(V)),
            USE_L2=use_l2, HAS_H0=h0 is not None, STORE_HT=store_ht, num_warps=num_warps or DEFAULT_WARPS, **meta)
        ctx.save_for_backward(lengths, h0, *xs)
        ctx.cfg = (scale, use_l2, padded, chunk_size, num_warps)
        return (*os_, ht)

    @staticmethod
    def backward(ctx, *grads):
        lengths, h0, *xs = ctx.saved_tensors
        scale, use_l2, padded, chunk_size, num_warps = ctx.cfg
        ndir = len(xs) // 5
        d_os, dht = grads[:ndir], grads[ndir]
        q, v = xs[0], xs[2]
        B, T, H, K = q.shape
        V = v.shape[-1]
        meta = _meta(q, v, chunk_size)
        BT, BK, BV = meta["BT"], max(16, triton.next_power_of_2(K)), max(16, triton.next_power_of_2(V))
        nt_max = max(1, triton.cdiv(T, BT))
        ws = torch.empty(ndir * B * H * (nt_max * BK * BV + BK * BV + BT * BT), dtype=torch.float32, device=q.device)
        per_dir = []
        dxs = []
        for d in range(ndir):
            x = xs[5 * d: 5 * d + 5]
            do = torch.zeros_like(x[2]) if d_os[d] is None else d_os[d].contiguous()
            dx = [_empty(t.shape, t, zero=padded) for t in x]
            dxs += dx
            per_dir.append((*x, do, *dx))
        dh0 = _empty(h0.shape, h0, torch.float32) if h0 is not None else None
        gdn_bwd_kernel[(B * H, ndir)](
            *per_dir[0], *per_dir[-1], h0, None if dht is None else dht.contiguous(), dh0, ws, lengths,
            scale, T, H, nt_max, K=K, V=V, BK=BK, BV=BV, USE_L2=use_l2, HAS_H0=h0 is not None,
            HAS_DHT=dht is not None, num_warps=num_warps or DEFAULT_WARPS, **meta)
        dh0 = dh0.to(h0.dtype) if h0 is not None else None
        return (None, None, None, dh0, None, None, None, *dxs)


@torch.compiler.disable
def chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state=None, lengths=None, use_qk_l2norm=True,
                           chunk_size: int | None = None, num_warps: int | None = None):
    """Triton causal gated delta rule; shapes as `had.kernels.gated_delta_rule`. Returns (o, final_state)."""
    h0 = None if initial_state is None else initial_state.contiguous()
    o, ht = _ChunkGDN.apply(lengths, scale, use_qk_l2norm, h0, True, chunk_size, num_warps, q, k, v, g, beta)
    return o, ht


@torch.compiler.disable
def chunk_bidirectional_gated_delta_rule(fwd, bwd, scale, lengths=None, use_qk_l2norm=True,
                                         chunk_size: int | None = None, num_warps: int | None = None):
    """Both directions in one launch per pass; see `had.kernels.bidirectional_gated_delta_rule`."""
    o_f, o_b, _ = _ChunkGDN.apply(lengths, scale, use_qk_l2norm, None, False, chunk_size, num_warps, *fwd, *bwd)
    return o_f, o_b
