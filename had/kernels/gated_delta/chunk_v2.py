"""Triton gated delta rule v2: one forward and one backward launch for both directions, chunk 16, one warp.

One program owns one (sequence, head, direction), keeps the fp32 state [K, V] in registers and walks the
sequence in chunks of 16: the chunked kernels are limited by instruction issue, not by bytes, and per token
chunk 16 issues the fewest warp-instructions (v1's forward at chunk 16 / 32 / 64: 495 / 731 / 2130, H100 times
in about the same ratio; timings in benchmarks/RESULTS.md). Differences from chunk.py:

- the unit-lower inverse (I + L)⁻¹ by block recursion on tensor cores (3 levels of two 16x16 dots) instead of
  a row-by-row substitution;
- dot operands in bf16 (OPERANDS="bf16") with fp32 state and accumulators; q/k normalisation and the other
  row scalings are folded into fp32 results or into fp32 intermediates, never into a re-rounded copy of a
  bf16 input;
- the forward stores, per chunk, the entering state and A (in operand precision) and rq, rk (fp32), so the
  backward is a single reverse sweep without inverse or renormalisation, with dL = -strictLower(dY Nᵀ)
  instead of -Aᵀ dA Aᵀ (A Y = N, Y = (I + L) N);
- q, k, v are read through their strides (no copies), their gradients written in `empty_like` layout, and
  every padded position t >= lengths[b] is zero-filled by the kernel itself.

The reverse direction reads position p of its sequence at input row lengths[b]-1-p (no flipped copies).
OPERANDS="emulated_bf16" rounds every dot operand to bf16 by integer round-to-nearest-even and multiplies in
fp32: the bf16 numerics under TRITON_INTERPRET=1, which can neither round nor multiply bf16 correctly.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


CHUNK = 16
DEFAULT_WARPS = 1
L2_EPS = 1e-6  # same eps as naive.l2norm
OPERANDS = {"fp32": 0, "bf16": 1, "emulated_bf16": 2}


@triton.jit
def _op(x, MODE: tl.constexpr):
    """A dot operand: as is (fp32), cast to bf16, or rounded to bf16 by RTNE and kept in fp32."""
    if MODE == 1:
        return x.to(tl.bfloat16)
    elif MODE == 2:
        bits = x.to(tl.float32).to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        return bits.to(tl.float32, bitcast=True)
    else:
        return x


@triton.jit
def _dot(a, b, MODE: tl.constexpr, acc=None):
    """acc + a @ b accumulated in fp32, operands per MODE (IEEE fp32 products unless bf16)."""
    if MODE == 1:
        return tl.dot(_op(a, MODE), _op(b, MODE), acc)
    else:
        return tl.dot(_op(a, MODE), _op(b, MODE), acc, input_precision="ieee")


@triton.jit
def _unit_lower_inverse(L, BT: tl.constexpr, MODE: tl.constexpr):
    """(I + L)⁻¹ for strictly lower L [BT, BT] by block recursion.

    Start from the inverse of the 2x2 diagonal blocks; at block size s = 4 .. BT, with X the lower-left
    (s/2 x s/2) quadrant of each s x s diagonal block, D <- D - D (X D). Exact, and every D is block-diagonal
    with blocks of the true inverse, so entries stay bounded (no growing products).
    """
    r = tl.arange(0, BT)[:, None]
    c = tl.arange(0, BT)[None, :]
    D = tl.where(r == c, 1.0, 0.0) - tl.where(r // 2 == c // 2, L, 0.0)
    for lg in tl.static_range(2, 8):
        if (1 << lg) <= BT:
            quad = (r >> lg == c >> lg) & ((r >> (lg - 1)) % 2 == 1) & ((c >> (lg - 1)) % 2 == 0)
            D = D - _dot(D, _dot(tl.where(quad, L, 0.0), D, MODE), MODE)
    return D


@triton.jit
def _inverse_norms(q, k, USE_L2: tl.constexpr, EPS: tl.constexpr):
    """rq, rk [BT]: 1 / |row| (with eps) of raw q, k [BT, BK], or ones without L2 normalisation."""
    if USE_L2:
        qf = q.to(tl.float32)
        kf = k.to(tl.float32)
        return tl.rsqrt(tl.sum(qf * qf, 1) + EPS), tl.rsqrt(tl.sum(kf * kf, 1) + EPS)
    else:
        ones = tl.full([q.shape[0]], 1.0, tl.float32)
        return ones, ones


@triton.jit
def _chunk_gates(k, kT, g, rk, BT: tl.constexpr, MODE: tl.constexpr):
    """G (cumulative gate), Gc (chunk total), Γ [BT, BT] (0 above the diagonal) and K̂K̂ᵀ (fp32)."""
    o = tl.arange(0, BT)
    G = tl.cumsum(g, 0)
    Gc = tl.sum(g, 0)  # padding rows have g = 0: G at the last real row
    # mask the exponent, not the result: exp of the upper triangle could overflow to inf
    Gam = tl.exp(tl.where(o[:, None] >= o[None, :], G[:, None] - G[None, :], float("-inf")))
    KK = _dot(k, kT, MODE) * (rk[:, None] * rk[None, :])
    return G, Gc, Gam, KK


@triton.jit
def _new_values(A, k, v, h, beta, gam, rk, MODE: tl.constexpr):
    """N = A Y with Y = β ⊙ (V - (e^G ⊙ K̂) h), the chunk's corrected values [BT, BV] (fp32)."""
    Y = beta[:, None] * (v - (gam * rk)[:, None] * _dot(k, h, MODE))
    return _dot(A, Y, MODE)


@triton.jit
def _seq(ptr, b, h, s_b, s_h):
    """Base pointer of sequence b, head h (int64 offset) for a [B, T, H, ...] tensor."""
    return ptr + b.to(tl.int64) * s_b + h.to(tl.int64) * s_h


@triton.jit
def _zero_rows(ptr, t, T, s_t, s_d, cols, ncols, BT: tl.constexpr, BC: tl.constexpr):
    """Zero rows t .. t+BT-1 (< T) of a [T, ncols] tile at ptr with strides (s_t, s_d)."""
    rows = t + tl.arange(0, BT)
    tl.store(ptr + rows[:, None] * s_t + cols[None, :] * s_d, tl.zeros([BT, BC], ptr.dtype.element_ty),
             mask=(rows < T)[:, None] & (cols < ncols)[None, :])


@triton.jit
def gdn_v2_fwd_kernel(
    q0, k0, v0, g0, beta0, o0,
    q1, k1, v1, g1, beta1, o1,
    h0_ptr, ht_ptr, hs_ptr, rs_ptr, lengths_ptr, scale, T, H, NT,
    sq_b, sq_t, sq_h, sq_d, sv_b, sv_t, sv_h, sv_d,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    MODE: tl.constexpr, USE_L2: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr,
    EPS: tl.constexpr,
):
    """Grid (B*H, directions). q, k share strides sq_*, v has sv_*; o, g, beta are contiguous.

    hs [directions, B*H, NT, BK*BV + BT*BT] receives, per chunk, the state entering it and its inverse A
    (for the backward, in the dot operand's precision), rs [directions, B*H, NT, 2, BT] rq and rk (fp32).
    """
    bh = tl.program_id(0)
    d = tl.program_id(1)
    b = bh // H
    h = bh % H
    if d == 0:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, o_ptr = q0, k0, v0, g0, beta0, o0
    else:
        q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, o_ptr = q1, k1, v1, g1, beta1, o1
    seq_len = tl.load(lengths_ptr + b)
    sign = 1 - 2 * d  # position p reads row t0 + sign * p
    t0 = d * (seq_len - 1)
    o = tl.arange(0, BT)
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    mk = (kk < K)[None, :]
    mv = (vv < V)[None, :]
    q_ptr = _seq(q_ptr, b, h, sq_b, sq_h)
    k_ptr = _seq(k_ptr, b, h, sq_b, sq_h)
    v_ptr = _seq(v_ptr, b, h, sv_b, sv_h)
    o_ptr = _seq(o_ptr, b, h, T * H * V, V)
    g_ptr = _seq(g_ptr, b, h, T * H, 1)
    beta_ptr = _seq(beta_ptr, b, h, T * H, 1)
    off_qk = (sign * o)[:, None] * sq_t + kk[None, :] * sq_d
    off_v = (sign * o)[:, None] * sv_t + vv[None, :] * sv_d
    off_o = (sign * o)[:, None] * (H * V) + vv[None, :]
    state = kk[:, None] * BV + vv[None, :]
    m_kv = (kk < K)[:, None] & mv
    CS: tl.constexpr = BK * BV + BT * BT
    hs_ptr += (d * tl.num_programs(0) + bh).to(tl.int64) * NT * CS
    rs_ptr += (d * tl.num_programs(0) + bh).to(tl.int64) * NT * 2 * BT
    tile = o[:, None] * BT + o[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h = tl.load(h0_ptr + bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :], mask=m_kv, other=0.0)
    for c in range(0, tl.cdiv(seq_len, BT)):
        tl.store(hs_ptr + c * CS + state, b_h.to(hs_ptr.dtype.element_ty))
        valid = (c * BT + o) < seq_len
        t = t0 + sign * c * BT  # row of position c * BT
        q = tl.load(q_ptr + t * sq_t + off_qk, mask=valid[:, None] & mk, other=0.0)
        k = tl.load(k_ptr + t * sq_t + off_qk, mask=valid[:, None] & mk, other=0.0)
        v = tl.load(v_ptr + t * sv_t + off_v, mask=valid[:, None] & mv, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + (t + sign * o) * H, mask=valid, other=0.0).to(tl.float32)
        beta = tl.load(beta_ptr + (t + sign * o) * H, mask=valid, other=0.0).to(tl.float32)
        rq, rk = _inverse_norms(q, k, USE_L2, EPS)
        tl.store(rs_ptr + c * 2 * BT + o, rq)
        tl.store(rs_ptr + c * 2 * BT + BT + o, rk)
        G, Gc, Gam, KK = _chunk_gates(k, tl.trans(k), g, rk, BT, MODE)
        A = _unit_lower_inverse(tl.where(o[:, None] > o[None, :], beta[:, None] * KK * Gam, 0.0), BT, MODE)
        tl.store(hs_ptr + c * CS + BK * BV + tile, A.to(hs_ptr.dtype.element_ty))
        gam = tl.exp(G)
        N = _new_values(A, k, v, b_h, beta, gam, rk, MODE)
        S = _dot(q, tl.trans(k), MODE) * Gam * rk[None, :]
        out = (scale * rq)[:, None] * _dot(S, N, MODE, gam[:, None] * _dot(q, b_h, MODE))
        tl.store(o_ptr + t * (H * V) + off_o, out.to(o_ptr.dtype.element_ty), mask=valid[:, None] & mv)
        b_h = _dot(tl.trans(k), (tl.exp(Gc - G) * rk)[:, None] * N, MODE, tl.exp(Gc) * b_h)
    if STORE_HT:
        tl.store(ht_ptr + bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :], b_h, mask=m_kv)
    for t in range(seq_len, T, BT):  # padding rows t >= seq_len, the same for both directions: o = 0
        _zero_rows(o_ptr, t, T, H * V, 1, vv, V, BT, BV)


@triton.jit
def gdn_v2_bwd_kernel(
    q0, k0, v0, g0, beta0, do0, dq0, dk0, dv0, dg0, dbeta0,
    q1, k1, v1, g1, beta1, do1, dq1, dk1, dv1, dg1, dbeta1,
    dht_ptr, dh0_ptr, hs_ptr, rs_ptr, lengths_ptr, scale, T, H, NT,
    sq_b, sq_t, sq_h, sq_d, sv_b, sv_t, sv_h, sv_d, so_b, so_t, so_h, so_d,
    sdq_b, sdq_t, sdq_h, sdq_d, sdv_b, sdv_t, sdv_h, sdv_d,
    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    MODE: tl.constexpr, USE_L2: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr,
    RELOAD_T: tl.constexpr, EPS: tl.constexpr,
):
    """Grid (B*H, directions): one reverse sweep per program carrying dh = dLoss/d(state leaving the chunk).

    Strides: q, k (sq_*), v (sv_*), do (so_*), dq, dk (sdq_*), dv (sdv_*); g, beta, dg, dbeta contiguous.
    RELOAD_T: load qᵀ, kᵀ a second time instead of transposing registers (fewer instructions and spills when
    the feature dim is contiguous, more when it is strided: measured by benchmarks/gdn_sass.py).
    """
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
    sign = 1 - 2 * d
    t0 = d * (seq_len - 1)
    o = tl.arange(0, BT)
    kk = tl.arange(0, BK)
    vv = tl.arange(0, BV)
    mk = (kk < K)[None, :]
    mv = (vv < V)[None, :]
    strict = o[:, None] > o[None, :]
    q_ptr = _seq(q_ptr, b, h, sq_b, sq_h)
    k_ptr = _seq(k_ptr, b, h, sq_b, sq_h)
    v_ptr = _seq(v_ptr, b, h, sv_b, sv_h)
    do_ptr = _seq(do_ptr, b, h, so_b, so_h)
    dq_ptr = _seq(dq_ptr, b, h, sdq_b, sdq_h)
    dk_ptr = _seq(dk_ptr, b, h, sdq_b, sdq_h)
    dv_ptr = _seq(dv_ptr, b, h, sdv_b, sdv_h)
    g_ptr = _seq(g_ptr, b, h, T * H, 1)
    beta_ptr = _seq(beta_ptr, b, h, T * H, 1)
    dg_ptr = _seq(dg_ptr, b, h, T * H, 1)
    dbeta_ptr = _seq(dbeta_ptr, b, h, T * H, 1)
    po = (sign * o)[:, None]
    po_t = (sign * o)[None, :]
    CS: tl.constexpr = BK * BV + BT * BT
    hs_ptr += (d * tl.num_programs(0) + bh).to(tl.int64) * NT * CS
    rs_ptr += (d * tl.num_programs(0) + bh).to(tl.int64) * NT * 2 * BT
    tile = o[:, None] * BT + o[None, :]
    tile_t = o[:, None] + o[None, :] * BT
    state = kk[:, None] * BV + vv[None, :]
    state_t = vv[:, None] + kk[None, :] * BV
    m_kv = (kk < K)[:, None] & mv
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh = tl.load(dht_ptr + bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :], mask=m_kv, other=0.0)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        valid = (c * BT + o) < seq_len
        t = t0 + sign * c * BT
        m_qk = valid[:, None] & mk
        m_qk_t = valid[None, :] & (kk < K)[:, None]
        m_v = valid[:, None] & mv
        q = tl.load(q_ptr + (t + po) * sq_t + kk[None, :] * sq_d, mask=m_qk, other=0.0)
        k = tl.load(k_ptr + (t + po) * sq_t + kk[None, :] * sq_d, mask=m_qk, other=0.0)
        v = tl.load(v_ptr + (t + po) * sv_t + vv[None, :] * sv_d, mask=m_v, other=0.0).to(tl.float32)
        do = tl.load(do_ptr + (t + po) * so_t + vv[None, :] * so_d, mask=m_v, other=0.0)
        g = tl.load(g_ptr + (t + sign * o) * H, mask=valid, other=0.0).to(tl.float32)
        beta = tl.load(beta_ptr + (t + sign * o) * H, mask=valid, other=0.0).to(tl.float32)
        b_h = tl.load(hs_ptr + c * CS + state)  # as stored by the forward: already dot operands
        A = tl.load(hs_ptr + c * CS + BK * BV + tile)
        AT = tl.load(hs_ptr + c * CS + BK * BV + tile_t)  # reloaded (L1) rather than transposed in registers
        rq = tl.load(rs_ptr + c * 2 * BT + o)
        rk = tl.load(rs_ptr + c * 2 * BT + BT + o)
        if RELOAD_T:  # the transposed operands reloaded (L1) rather than transposed in registers
            qT = tl.load(q_ptr + (t + po_t) * sq_t + kk[:, None] * sq_d, mask=m_qk_t, other=0.0)
            kT = tl.load(k_ptr + (t + po_t) * sq_t + kk[:, None] * sq_d, mask=m_qk_t, other=0.0)
        else:
            qT = tl.trans(q)
            kT = tl.trans(k)
        G, Gc, Gam, KK = _chunk_gates(k, kT, g, rk, BT, MODE)
        gam = tl.exp(G)
        lam = tl.exp(Gc - G)
        eGc = tl.exp(Gc)
        qf = q.to(tl.float32)
        kf = k.to(tl.float32)
        N = _new_values(A, k, v, b_h, beta, gam, rk, MODE)
        S = _dot(q, kT, MODE) * Gam * ((scale * rq)[:, None] * rk[None, :])  # s (Q̂ K̂ᵀ) ⊙ Γ
        dN = _dot(tl.trans(S), do, MODE, (lam * rk)[:, None] * _dot(k, b_dh, MODE))
        dY = _dot(AT, dN, MODE)  # Y = β ⊙ V - Xw h with Xw = β e^G ⊙ K̂
        # each gradient is stored as soon as it is complete, to keep few tiles live (spills)
        tl.store(dv_ptr + (t + po) * sdv_t + vv[None, :] * sdv_d, (beta[:, None] * dY).to(dv_ptr.dtype.element_ty),
                 mask=m_v)
        dS = _dot(do, tl.trans(N), MODE)  # dLoss/dS without the scale
        P = dS * Gam
        b_hT = tl.load(hs_ptr + c * CS + state_t)  # likewise hᵀ
        do_h = _dot(do, b_hT, MODE) * (scale * gam)[:, None]
        dG = rq * tl.sum(do_h * qf, 1)
        dq = _dot(P * (scale * rk)[None, :], k, MODE, do_h)  # dLoss/dQ̂
        if USE_L2:  # d x = r (dy - y <y, dy>) with y = x r
            dq = rq[:, None] * dq - (rq * rq * rq * tl.sum(qf * dq, 1))[:, None] * qf
        tl.store(dq_ptr + (t + po) * sdq_t + kk[None, :] * sdq_d, dq.to(dq_ptr.dtype.element_ty), mask=m_qk)
        dk_h = _dot(N, tl.trans(b_dh), MODE) * lam[:, None]
        dkh_k = rk * tl.sum(dk_h * kf, 1)
        nXw = _dot(dY, b_hT, MODE)  # -dXw
        xw_k = -gam * rk * tl.sum(nXw * kf, 1)
        # dL = -strictLower(dY Nᵀ) (A Y = N); nE = -dL ⊙ Γ, and dL ⊙ L = -β ⊙ nE ⊙ K̂K̂ᵀ
        nE = tl.where(strict, _dot(dY, tl.trans(N), MODE) * Gam, 0.0)
        EKK = nE * KK
        nEb = nE * beta[:, None]
        dk = _dot((nEb + tl.trans(nEb)) * (-rk)[None, :], k, MODE, dk_h - (beta * gam)[:, None] * nXw)
        dk = _dot(tl.trans(P * (scale * rq)[:, None]), q, MODE, dk)  # dLoss/dK̂
        if USE_L2:
            dk = rk[:, None] * dk - (rk * rk * rk * tl.sum(kf * dk, 1))[:, None] * kf
        tl.store(dk_ptr + (t + po) * sdq_t + kk[None, :] * sdq_d, dk.to(dk_ptr.dtype.element_ty), mask=m_qk)
        dbeta = xw_k + tl.sum(dY * v, 1) - tl.sum(EKK, 1)
        # Γ's share of dG from the C x C tiles (rowsum - colsum): the diagonal, whose Γ = 1 has no gradient,
        # then cancels exactly instead of through two differently rounded dots
        dGam = dS * S - beta[:, None] * EKK
        dG += beta * xw_k - dkh_k + tl.sum(dGam, 1) - tl.sum(dGam, 0)
        # the chunk's total decay e^{G_c} reaches later chunks through the state and λ
        dGc = eGc * tl.sum(tl.sum(b_h.to(tl.float32) * b_dh, 1), 0) + tl.sum(dkh_k, 0)
        dG += tl.where(o == BT - 1, dGc, 0.0)
        dg = tl.cumsum(dG, 0, reverse=True)
        b_dh = _dot(qT, (scale * gam * rq)[:, None] * do.to(tl.float32), MODE, eGc * b_dh)
        b_dh = _dot(kT, (-beta * gam * rk)[:, None] * dY, MODE, b_dh)
        tl.store(dg_ptr + (t + sign * o) * H, dg.to(dg_ptr.dtype.element_ty), mask=valid)
        tl.store(dbeta_ptr + (t + sign * o) * H, dbeta.to(dbeta_ptr.dtype.element_ty), mask=valid)
    if HAS_H0:
        tl.store(dh0_ptr + bh.to(tl.int64) * K * V + kk[:, None] * V + vv[None, :], b_dh, mask=m_kv)
    for t in range(seq_len, T, BT):  # padding rows: zero gradients
        _zero_rows(dq_ptr, t, T, sdq_t, sdq_d, kk, K, BT, BK)
        _zero_rows(dk_ptr, t, T, sdq_t, sdq_d, kk, K, BT, BK)
        _zero_rows(dv_ptr, t, T, sdv_t, sdv_d, vv, V, BT, BV)
        tl.store(dg_ptr + (t + o) * H, tl.zeros([BT], dg_ptr.dtype.element_ty), mask=t + o < T)
        tl.store(dbeta_ptr + (t + o) * H, tl.zeros([BT], dbeta_ptr.dtype.element_ty), mask=t + o < T)


def _strides(ts: list[torch.Tensor]) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    """`ts` and their common strides, or contiguous copies of them where their strides differ."""
    if any(t.stride() != ts[0].stride() for t in ts):
        ts = [t.contiguous() for t in ts]
    return ts, ts[0].stride()


def _mode(x: torch.Tensor, operands: str | None) -> int:
    """Operand mode: bf16 dots for bf16/fp16 inputs, IEEE fp32 dots for fp32 inputs, unless `operands` says."""
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"GDN triton_v2: q, k, v must be float32, bfloat16 or float16, got {x.dtype}")
    if operands is None:
        return OPERANDS["fp32" if x.dtype == torch.float32 else "bf16"]
    if operands not in OPERANDS:
        raise ValueError(f"GDN triton_v2: operands={operands!r} is not one of {', '.join(OPERANDS)}")
    return OPERANDS[operands]


def _empty(like: torch.Tensor, shape=None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A buffer the kernels write in full, padding included: `like`'s dimension order (dense) without `shape`.
    Tests patch this to fill NaN."""
    if shape is None:
        return torch.empty_like(like, dtype=dtype)
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device)


def _launch(num_warps: int | None, num_stages: int | None) -> dict:
    return dict(num_warps=num_warps or DEFAULT_WARPS, **({"num_stages": num_stages} if num_stages else {}))


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


class _ChunkGDNv2(torch.autograd.Function):
    """Autograd over one v2 launch per pass for 1 or 2 directions (inputs flattened as 5 per direction)."""

    @staticmethod
    def forward(ctx, lengths, scale, use_l2, h0, store_ht, operands, launch, *xs):
        ndir = len(xs) // 5
        q, v = xs[0], xs[2]
        B, T, H, K = q.shape
        V = v.shape[-1]
        mode = _mode(q, operands)
        qk, sq = _strides([xs[5 * d + i] for d in range(ndir) for i in (0, 1)])
        vs, sv = _strides([xs[5 * d + 2] for d in range(ndir)])
        gb = [xs[5 * d + i].contiguous() for d in range(ndir) for i in (3, 4)]
        per_dir = [(qk[2 * d], qk[2 * d + 1], vs[d], gb[2 * d], gb[2 * d + 1]) for d in range(ndir)]
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int32, device=q.device)
        lengths = lengths.to(device=q.device, dtype=torch.int32).contiguous()
        BK, BV, NT = _block(K), _block(V), max(1, triton.cdiv(T, CHUNK))
        os_ = [_empty(q, (B, T, H, V)) for _ in range(ndir)]
        hs = torch.empty((ndir, B * H, NT, BK * BV + CHUNK * CHUNK), dtype=torch.bfloat16 if mode == 1 else torch.float32,
                         device=q.device)
        rs = torch.empty((ndir, B * H, NT, 2, CHUNK), dtype=torch.float32, device=q.device)
        ht = torch.empty((B, H, K, V), dtype=torch.float32, device=q.device) if store_ht else None
        h0c = None if h0 is None else h0.to(torch.float32).contiguous()
        args = [(*x, o) for x, o in zip(per_dir, os_)]
        gdn_v2_fwd_kernel[(B * H, ndir)](
            *args[0], *args[-1], h0c, ht, hs, rs, lengths, scale, T, H, NT, *sq, *sv,
            K=K, V=V, BK=BK, BV=BV, BT=CHUNK, MODE=mode, USE_L2=use_l2, HAS_H0=h0 is not None,
            STORE_HT=store_ht, EPS=L2_EPS, **launch)
        ctx.save_for_backward(lengths, h0, hs, rs, *[x for p in per_dir for x in p])
        ctx.cfg = (scale, use_l2, mode, launch)
        return (*os_, ht)

    @staticmethod
    def backward(ctx, *grads):
        lengths, h0, hs, rs, *xs = ctx.saved_tensors
        scale, use_l2, mode, launch = ctx.cfg
        ndir = len(xs) // 5
        d_os, dht = grads[:ndir], grads[ndir]
        q, v = xs[0], xs[2]
        B, T, H, K = q.shape
        V = v.shape[-1]
        dos, so = _strides([torch.zeros_like(xs[5 * d + 2]) if d_os[d] is None else d_os[d] for d in range(ndir)])
        dxs, args = [], []
        for d in range(ndir):
            x = xs[5 * d: 5 * d + 5]
            dx = [_empty(t) for t in x]  # the caller's dimension order, dense
            dxs += dx
            args.append((*x, dos[d], *dx))
        dh0 = torch.empty((B, H, K, V), dtype=torch.float32, device=q.device) if h0 is not None else None
        gdn_v2_bwd_kernel[(B * H, ndir)](
            *args[0], *args[-1], None if dht is None else dht.to(torch.float32).contiguous(), dh0, hs, rs, lengths,
            scale, T, H, hs.shape[2], *q.stride(), *v.stride(), *so, *dxs[0].stride(), *dxs[2].stride(),
            K=K, V=V, BK=_block(K), BV=_block(V), BT=CHUNK, MODE=mode, USE_L2=use_l2, HAS_H0=h0 is not None,
            HAS_DHT=dht is not None, RELOAD_T=q.stride(-1) == 1, EPS=L2_EPS, **launch)
        dh0 = dh0.to(h0.dtype) if h0 is not None else None
        return (None, None, None, dh0, None, None, None, *dxs)


@torch.compiler.disable
def chunk_gated_delta_rule_v2(q, k, v, g, beta, scale, initial_state=None, lengths=None, use_qk_l2norm=True,
                              operands: str | None = None, num_warps: int | None = None,
                              num_stages: int | None = None):
    """v2 Triton causal gated delta rule; shapes as `had.kernels.gated_delta_rule`. Returns (o, final_state).

    operands: "fp32" | "bf16" | "emulated_bf16" (default: fp32 for fp32 inputs, else bf16); num_warps,
    num_stages: launch options (default 1 warp, Triton's default stages).
    """
    o, ht = _ChunkGDNv2.apply(lengths, scale, use_qk_l2norm, initial_state, True, operands,
                              _launch(num_warps, num_stages), q, k, v, g, beta)
    return o, ht


@torch.compiler.disable
def chunk_bidirectional_gated_delta_rule_v2(fwd, bwd, scale, lengths=None, use_qk_l2norm=True,
                                            operands: str | None = None, num_warps: int | None = None,
                                            num_stages: int | None = None):
    """Both directions in one v2 launch per pass; see `had.kernels.bidirectional_gated_delta_rule` and
    `chunk_gated_delta_rule_v2` for the options."""
    o_f, o_b, _ = _ChunkGDNv2.apply(lengths, scale, use_qk_l2norm, None, False, operands,
                                    _launch(num_warps, num_stages), *fwd, *bwd)
    return o_f, o_b
