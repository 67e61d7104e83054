"""Triton chunk-parallel gated linear attention, forward and backward (after flash-linear-attention's `chunk_gla`).

Inside a chunk of BT tokens, with chunk-local cumulative gates b_t = g_1 + ... + g_t (b decreases), the output is

    o_t = scale * (q_t * exp(b_t)) S_0 + sum_{s <= t} A[t, s] v_s,   A[t, s] = scale * sum_k q_tk k_sk exp(b_tk - b_sk)
    S_BT = exp(b_BT) * S_0 + sum_s (k_s * exp(b_BT - b_s))^T v_s

Every exponent is kept <= 0: the intra-chunk scores are built from 16-token sub-chunks, the decay between two
sub-chunks split around a boundary position that lies between them, and the diagonal sub-chunks computed one key
at a time. States are carried in fp32 from chunk to chunk by one sequential kernel; the rest is parallel over chunks.
The backward recomputes the states and the scores instead of saving them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import block_size, dot_precision, is_interpreted

INTERPRETED = is_interpreted()
SUB_CHUNK = 16


@triton.jit
def gla_fwd_h_kernel(
    k, v, gc, h, h0, ht, T, NT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, PRECISION: tl.constexpr,
):
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k, mask_v = offs_k < K, offs_v < V
    state = (i_bh * K + offs_k[:, None]) * V + offs_v[None, :]
    mask_kv = mask_k[:, None] & mask_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + state, mask=mask_kv, other=0.0).to(tl.float32)
    for i_t in range(NT):
        tl.store(h + ((i_bh * NT + i_t) * K + offs_k[:, None]) * V + offs_v[None, :], b_h, mask=mask_kv)
        offs_t = i_t * BT + tl.arange(0, BT)
        mask_t = offs_t < T
        last = tl.minimum(i_t * BT + BT, T) - 1
        b_k = tl.load(k + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :],
                      mask=mask_t[:, None] & mask_k[None, :], other=0.0)
        b_g = tl.load(gc + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :],
                      mask=mask_t[:, None] & mask_k[None, :], other=0.0)
        b_v = tl.load(v + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :],
                      mask=mask_t[:, None] & mask_v[None, :], other=0.0)
        b_glast = tl.load(gc + ((i_b * T + last) * H + i_h) * K + offs_k, mask=mask_k, other=0.0)
        b_kd = b_k * tl.exp(b_glast[None, :] - b_g)
        b_h = b_h * tl.exp(b_glast)[:, None] + tl.dot(tl.trans(b_kd.to(b_v.dtype)), b_v, input_precision=PRECISION)
    if STORE_HT:
        tl.store(ht + state, b_h, mask=mask_kv)


@triton.jit
def gla_fwd_A_kernel(
    q, k, gc, A, scale, T,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    NC: tl.constexpr = BT // BC
    offs_k = tl.arange(0, BK)
    offs_c = tl.arange(0, BC)
    mask_k = offs_k < K
    for i_i in tl.static_range(NC):
        first = i_t * BT + i_i * BC
        rows = first + offs_c
        mask_r = rows < T
        mask_rk = mask_r[:, None] & mask_k[None, :]
        b_q = tl.load(q + ((i_b * T + rows[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_rk, other=0.0)
        b_gq = tl.load(gc + ((i_b * T + rows[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_rk, other=0.0)
        b_gn = tl.load(gc + ((i_b * T + first) * H + i_h) * K + offs_k, mask=mask_k & (first < T), other=0.0)
        b_qg = b_q.to(tl.float32) * tl.exp(tl.where(mask_rk, b_gq - b_gn[None, :], 0.0))
        for i_j in tl.static_range(i_i):
            cols = i_t * BT + i_j * BC + offs_c
            mask_ck = (cols < T)[:, None] & mask_k[None, :]
            b_k = tl.load(k + ((i_b * T + cols[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_ck, other=0.0)
            b_gk = tl.load(gc + ((i_b * T + cols[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_ck, other=0.0)
            b_kg = b_k.to(tl.float32) * tl.exp(b_gn[None, :] - b_gk)
            b_A = tl.dot(b_qg, tl.trans(b_kg), input_precision="ieee") * scale
            tl.store(A + (i_bh * T + rows[:, None]) * BT + i_j * BC + offs_c[None, :], b_A, mask=mask_r[:, None])
        b_A = tl.zeros([BC, BC], dtype=tl.float32)
        for j in range(BC):
            col = first + j
            b_kj = tl.load(k + ((i_b * T + col) * H + i_h) * K + offs_k, mask=mask_k & (col < T), other=0.0)
            b_gj = tl.load(gc + ((i_b * T + col) * H + i_h) * K + offs_k, mask=mask_k & (col < T), other=0.0)
            inside = (offs_c >= j)[:, None] & mask_rk
            decay = tl.exp(tl.where(inside, b_gq - b_gj[None, :], float("-inf")))
            a = tl.sum(b_q.to(tl.float32) * b_kj.to(tl.float32)[None, :] * decay, 1) * scale
            b_A = tl.where(offs_c[None, :] == j, a[:, None], b_A)
        tl.store(A + (i_bh * T + rows[:, None]) * BT + i_i * BC + offs_c[None, :], b_A, mask=mask_r[:, None])


@triton.jit
def gla_fwd_o_kernel(
    q, v, gc, h, A, o, scale, T, NT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_v, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    offs_t = i_t * BT + tl.arange(0, BT)
    offs_s = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_t, mask_k, mask_v = offs_t < T, offs_k < K, offs_v < V
    mask_tk = mask_t[:, None] & mask_k[None, :]
    b_q = tl.load(q + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_tk, other=0.0)
    b_g = tl.load(gc + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_tk, other=0.0)
    b_h = tl.load(h + ((i_bh * NT + i_t) * K + offs_k[:, None]) * V + offs_v[None, :],
                  mask=mask_k[:, None] & mask_v[None, :], other=0.0)
    b_qg = b_q * tl.exp(b_g) * scale
    b_o = tl.dot(b_qg.to(b_q.dtype), b_h.to(b_q.dtype), input_precision=PRECISION)
    b_A = tl.load(A + (i_bh * T + offs_t[:, None]) * BT + offs_s[None, :], mask=mask_t[:, None], other=0.0)
    b_A = tl.where(offs_s[None, :] <= tl.arange(0, BT)[:, None], b_A, 0.0)
    b_v = tl.load(v + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :],
                  mask=mask_t[:, None] & mask_v[None, :], other=0.0)
    b_o += tl.dot(b_A.to(b_v.dtype), b_v, input_precision=PRECISION)
    tl.store(o + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], b_o.to(o.dtype.element_ty),
             mask=mask_t[:, None] & mask_v[None, :])


@triton.jit
def gla_bwd_dh_kernel(
    q, gc, do, dh, dht, dh0, scale, T, NT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, PRECISION: tl.constexpr,
):
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k, mask_v = offs_k < K, offs_v < V
    state = (i_bh * K + offs_k[:, None]) * V + offs_v[None, :]
    mask_kv = mask_k[:, None] & mask_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dh += tl.load(dht + state, mask=mask_kv, other=0.0).to(tl.float32)
    for i_rev in range(NT):
        i_t = NT - 1 - i_rev
        # dh[i_t] is the gradient of the state after chunk i_t.
        tl.store(dh + ((i_bh * NT + i_t) * K + offs_k[:, None]) * V + offs_v[None, :], b_dh, mask=mask_kv)
        offs_t = i_t * BT + tl.arange(0, BT)
        mask_t = offs_t < T
        last = tl.minimum(i_t * BT + BT, T) - 1
        b_q = tl.load(q + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :],
                      mask=mask_t[:, None] & mask_k[None, :], other=0.0)
        b_g = tl.load(gc + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :],
                      mask=mask_t[:, None] & mask_k[None, :], other=0.0)
        b_do = tl.load(do + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :],
                       mask=mask_t[:, None] & mask_v[None, :], other=0.0)
        b_glast = tl.load(gc + ((i_b * T + last) * H + i_h) * K + offs_k, mask=mask_k, other=0.0)
        b_qg = b_q * tl.exp(b_g) * scale
        b_dh = b_dh * tl.exp(b_glast)[:, None] + tl.dot(tl.trans(b_qg.to(b_do.dtype)), b_do, input_precision=PRECISION)
    tl.store(dh0 + state, b_dh, mask=mask_kv)


@triton.jit
def gla_bwd_dA_dv_kernel(
    k, v, gc, A, do, dh, dA, dv, scale, T, NT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_t, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    offs_t = i_t * BT + tl.arange(0, BT)
    local = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    mask_t, mask_k = offs_t < T, offs_k < K
    mask_tk = mask_t[:, None] & mask_k[None, :]
    causal = (local[None, :] <= local[:, None]) & mask_t[:, None]
    last = tl.minimum(i_t * BT + BT, T) - 1
    b_A = tl.load(A + (i_bh * T + offs_t[:, None]) * BT + local[None, :], mask=mask_t[:, None], other=0.0)
    b_A = tl.where(causal, b_A, 0.0)
    b_k = tl.load(k + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_tk, other=0.0)
    b_g = tl.load(gc + ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_tk, other=0.0)
    b_glast = tl.load(gc + ((i_b * T + last) * H + i_h) * K + offs_k, mask=mask_k, other=0.0)
    b_kd = (b_k * tl.exp(b_glast[None, :] - b_g)).to(b_k.dtype)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        offs_v = i_v * BV + tl.arange(0, BV)
        mask_v = offs_v < V
        mask_tv = mask_t[:, None] & mask_v[None, :]
        b_do = tl.load(do + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], mask=mask_tv, other=0.0)
        b_v = tl.load(v + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], mask=mask_tv, other=0.0)
        b_dh = tl.load(dh + ((i_bh * NT + i_t) * K + offs_k[:, None]) * V + offs_v[None, :],
                       mask=mask_k[:, None] & mask_v[None, :], other=0.0)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PRECISION)
        b_dv = tl.dot(tl.trans(b_A).to(b_do.dtype), b_do, input_precision=PRECISION)
        b_dv += tl.dot(b_kd, b_dh.to(b_k.dtype), input_precision=PRECISION)
        tl.store(dv + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], b_dv.to(dv.dtype.element_ty),
                 mask=mask_tv)
    # The stored dA carries the scale, so the intra-chunk dq/dk below need not.
    b_dA = tl.where(causal, b_dA * scale, 0.0)
    tl.store(dA + (i_bh * T + offs_t[:, None]) * BT + local[None, :], b_dA, mask=mask_t[:, None])


@triton.jit
def gla_bwd_intra_kernel(
    q, k, gc, dA, dq, dk, T,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    i_i, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    NC: tl.constexpr = BT // BC
    offs_c = tl.arange(0, BC)
    offs_k = tl.arange(0, BK)
    mask_k = offs_k < K
    first = i_t * BT + i_i * BC
    rows = first + offs_c
    mask_r = rows < T
    mask_rk = mask_r[:, None] & mask_k[None, :]
    b_g = tl.load(gc + ((i_b * T + rows[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_rk, other=0.0)

    # dq: keys of earlier sub-chunks, decay split around this sub-chunk's first position.
    b_gn = tl.load(gc + ((i_b * T + first) * H + i_h) * K + offs_k, mask=mask_k & (first < T), other=0.0)
    b_dq = tl.zeros([BC, BK], dtype=tl.float32)
    for i_j in range(i_i):
        cols = i_t * BT + i_j * BC + offs_c
        mask_ck = (cols < T)[:, None] & mask_k[None, :]
        b_k = tl.load(k + ((i_b * T + cols[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_ck, other=0.0)
        b_gk = tl.load(gc + ((i_b * T + cols[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_ck, other=0.0)
        b_kg = b_k.to(tl.float32) * tl.exp(b_gn[None, :] - b_gk)
        b_dA = tl.load(dA + (i_bh * T + rows[:, None]) * BT + i_j * BC + offs_c[None, :], mask=mask_r[:, None], other=0.0)
        b_dq += tl.dot(b_dA, b_kg, input_precision="ieee")
    b_dq *= tl.exp(tl.where(mask_rk, b_g - b_gn[None, :], 0.0))
    for j in range(BC):
        col = first + j
        b_kj = tl.load(k + ((i_b * T + col) * H + i_h) * K + offs_k, mask=mask_k & (col < T), other=0.0)
        b_gj = tl.load(gc + ((i_b * T + col) * H + i_h) * K + offs_k, mask=mask_k & (col < T), other=0.0)
        b_dAj = tl.load(dA + (i_bh * T + rows) * BT + i_i * BC + j, mask=mask_r, other=0.0)
        inside = (offs_c >= j)[:, None] & mask_rk
        decay = tl.exp(tl.where(inside, b_g - b_gj[None, :], float("-inf")))
        b_dq += b_dAj[:, None] * b_kj.to(tl.float32)[None, :] * decay

    # dk: queries of later sub-chunks, decay split around this sub-chunk's last position.
    last = tl.minimum(first + BC, T) - 1
    b_gm = tl.load(gc + ((i_b * T + last) * H + i_h) * K + offs_k, mask=mask_k & (last >= 0), other=0.0)
    b_dk = tl.zeros([BC, BK], dtype=tl.float32)
    for i_j in range(i_i + 1, NC):
        qrows = i_t * BT + i_j * BC + offs_c
        mask_q = qrows < T
        mask_qk = mask_q[:, None] & mask_k[None, :]
        b_q = tl.load(q + ((i_b * T + qrows[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_qk, other=0.0)
        b_gq = tl.load(gc + ((i_b * T + qrows[:, None]) * H + i_h) * K + offs_k[None, :], mask=mask_qk, other=0.0)
        b_qg = b_q.to(tl.float32) * tl.exp(tl.where(mask_qk, b_gq - b_gm[None, :], 0.0))
        b_dA = tl.load(dA + (i_bh * T + qrows[:, None]) * BT + i_i * BC + offs_c[None, :], mask=mask_q[:, None], other=0.0)
        b_dk += tl.dot(tl.trans(b_dA), b_qg, input_precision="ieee")
    b_dk *= tl.exp(tl.where(mask_rk, b_gm[None, :] - b_g, 0.0))
    for j in range(BC):
        row = first + j
        b_qj = tl.load(q + ((i_b * T + row) * H + i_h) * K + offs_k, mask=mask_k & (row < T), other=0.0)
        b_gqj = tl.load(gc + ((i_b * T + row) * H + i_h) * K + offs_k, mask=mask_k & (row < T), other=0.0)
        b_dAr = tl.load(dA + (i_bh * T + row) * BT + i_i * BC + offs_c, mask=(row < T), other=0.0)
        inside = (offs_c <= j)[:, None] & mask_rk
        decay = tl.exp(tl.where(inside, b_gqj[None, :] - b_g, float("-inf")))
        b_dk += b_dAr[:, None] * b_qj.to(tl.float32)[None, :] * decay

    tl.store(dq + ((i_b * T + rows[:, None]) * H + i_h) * K + offs_k[None, :], b_dq, mask=mask_rk)
    tl.store(dk + ((i_b * T + rows[:, None]) * H + i_h) * K + offs_k[None, :], b_dk, mask=mask_rk)


@triton.jit
def gla_bwd_inter_kernel(
    q, k, v, gc, h, do, dh, dq_intra, dk_intra, dq, dk, dg, scale, T, NT,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_k, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_b, i_h = i_bh // H, i_bh % H
    offs_t = i_t * BT + tl.arange(0, BT)
    offs_k = i_k * BK + tl.arange(0, BK)
    mask_t, mask_k = offs_t < T, offs_k < K
    mask_tk = mask_t[:, None] & mask_k[None, :]
    rows_k = ((i_b * T + offs_t[:, None]) * H + i_h) * K + offs_k[None, :]
    last = tl.minimum(i_t * BT + BT, T) - 1
    b_q = tl.load(q + rows_k, mask=mask_tk, other=0.0)
    b_k = tl.load(k + rows_k, mask=mask_tk, other=0.0)
    b_g = tl.load(gc + rows_k, mask=mask_tk, other=0.0)
    b_glast = tl.load(gc + ((i_b * T + last) * H + i_h) * K + offs_k, mask=mask_k, other=0.0)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dglast = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        offs_v = i_v * BV + tl.arange(0, BV)
        mask_v = offs_v < V
        mask_tv = mask_t[:, None] & mask_v[None, :]
        mask_kv = mask_k[:, None] & mask_v[None, :]
        chunk_state = ((i_bh * NT + i_t) * K + offs_k[:, None]) * V + offs_v[None, :]
        b_v = tl.load(v + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], mask=mask_tv, other=0.0)
        b_do = tl.load(do + ((i_b * T + offs_t[:, None]) * H + i_h) * V + offs_v[None, :], mask=mask_tv, other=0.0)
        b_h = tl.load(h + chunk_state, mask=mask_kv, other=0.0)
        b_dh = tl.load(dh + chunk_state, mask=mask_kv, other=0.0)
        b_dglast += tl.sum(b_h * b_dh, 1)
        b_dq += tl.dot(b_do, tl.trans(b_h).to(b_do.dtype), input_precision=PRECISION)
        b_dk += tl.dot(b_v, tl.trans(b_dh).to(b_v.dtype), input_precision=PRECISION)
    b_dglast *= tl.exp(b_glast)
    b_dq = b_dq * tl.exp(b_g) * scale
    b_dk = b_dk * tl.exp(tl.where(mask_tk, b_glast[None, :] - b_g, 0.0))
    b_dglast += tl.sum(b_dk * b_k, 0)
    b_dq += tl.load(dq_intra + rows_k, mask=mask_tk, other=0.0)
    b_dk += tl.load(dk_intra + rows_k, mask=mask_tk, other=0.0)
    # Gradient of the cumulative gate b_t, then dg_s = sum_{t >= s} db_t; the chunk's last gate also scales the
    # carried state, which reaches every g_s of the chunk.
    b_db = b_q * b_dq - b_k * b_dk
    b_dg = b_db - tl.cumsum(b_db, 0) + tl.sum(b_db, 0)[None, :] + b_dglast[None, :]
    tl.store(dq + rows_k, b_dq.to(dq.dtype.element_ty), mask=mask_tk)
    tl.store(dk + rows_k, b_dk.to(dk.dtype.element_ty), mask=mask_tk)
    tl.store(dg + rows_k, b_dg.to(dg.dtype.element_ty), mask=mask_tk)


def chunk_local_cumsum(g: torch.Tensor, chunk_size: int) -> torch.Tensor:
    B, T, H, K = g.shape
    pad = (-T) % chunk_size
    gp = torch.nn.functional.pad(g.float(), (0, 0, 0, 0, 0, pad))
    return gp.view(B, -1, chunk_size, H, K).cumsum(2).view(B, T + pad, H, K)[:, :T].contiguous()


def _value_block(V: int) -> int:
    return min(64, block_size(V))


def gla_states(k, v, gc, initial_state, chunk_size, output_final_state):
    B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, chunk_size)
    BK, BV = min(64, block_size(K)), _value_block(V)
    h = torch.empty(B, H, NT, K, V, device=k.device, dtype=torch.float32)
    ht = torch.empty(B, H, K, V, device=k.device, dtype=torch.float32) if output_final_state else None
    gla_fwd_h_kernel[(triton.cdiv(K, BK), triton.cdiv(V, BV), B * H)](
        k, v, gc, h, initial_state, ht, T, NT,
        H=H, K=K, V=V, BT=chunk_size, BK=BK, BV=BV, USE_H0=initial_state is not None,
        STORE_HT=output_final_state, PRECISION=dot_precision(k.dtype),
    )
    return h, ht


def gla_intra_scores(q, k, gc, scale, chunk_size):
    B, T, H, K = q.shape
    A = torch.zeros(B, H, T, chunk_size, device=q.device, dtype=torch.float32)
    gla_fwd_A_kernel[(triton.cdiv(T, chunk_size), B * H)](
        q, k, gc, A, scale, T, H=H, K=K, BT=chunk_size, BC=SUB_CHUNK, BK=block_size(K),
    )
    return A


def gla_forward(q, k, v, gc, scale, initial_state, chunk_size, output_final_state):
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, chunk_size)
    h, ht = gla_states(k, v, gc, initial_state, chunk_size, output_final_state)
    A = gla_intra_scores(q, k, gc, scale, chunk_size)
    o = torch.empty_like(v)
    BV = _value_block(V)
    gla_fwd_o_kernel[(triton.cdiv(V, BV), NT, B * H)](
        q, v, gc, h, A, o, scale, T, NT,
        H=H, K=K, V=V, BT=chunk_size, BK=block_size(K), BV=BV, PRECISION=dot_precision(q.dtype),
    )
    return o, ht


def gla_backward(q, k, v, gc, scale, initial_state, chunk_size, do, dht):
    B, T, H, K = q.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, chunk_size)
    BK, BV = min(64, block_size(K)), _value_block(V)
    precision = dot_precision(q.dtype)
    h, _ = gla_states(k, v, gc, initial_state, chunk_size, False)
    A = gla_intra_scores(q, k, gc, scale, chunk_size)
    dh = torch.empty(B, H, NT, K, V, device=q.device, dtype=torch.float32)
    dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
    gla_bwd_dh_kernel[(triton.cdiv(K, BK), triton.cdiv(V, BV), B * H)](
        q, gc, do, dh, dht, dh0, scale, T, NT,
        H=H, K=K, V=V, BT=chunk_size, BK=BK, BV=BV, USE_DHT=dht is not None, PRECISION=precision,
    )
    dA = torch.empty(B, H, T, chunk_size, device=q.device, dtype=torch.float32)
    dv = torch.empty_like(v)
    gla_bwd_dA_dv_kernel[(NT, B * H)](
        k, v, gc, A, do, dh, dA, dv, scale, T, NT,
        H=H, K=K, V=V, BT=chunk_size, BK=block_size(K), BV=BV, PRECISION=precision,
    )
    dq_intra = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    dk_intra = torch.empty_like(dq_intra)
    gla_bwd_intra_kernel[(chunk_size // SUB_CHUNK, NT, B * H)](
        q, k, gc, dA, dq_intra, dk_intra, T, H=H, K=K, BT=chunk_size, BC=SUB_CHUNK, BK=block_size(K),
    )
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dg = torch.empty(B, T, H, K, device=q.device, dtype=torch.float32)
    gla_bwd_inter_kernel[(triton.cdiv(K, BK), NT, B * H)](
        q, k, v, gc, h, do, dh, dq_intra, dk_intra, dq, dk, dg, scale, T, NT,
        H=H, K=K, V=V, BT=chunk_size, BK=BK, BV=BV, PRECISION=precision,
    )
    return dq, dk, dv, dg, dh0


class ChunkGatedLinearAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, initial_state, output_final_state, chunk_size):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        gc = chunk_local_cumsum(g, chunk_size)
        h0 = None if initial_state is None else initial_state.float().contiguous()
        o, ht = gla_forward(q, k, v, gc, scale, h0, chunk_size, output_final_state)
        ctx.save_for_backward(q, k, v, gc, h0)
        ctx.scale, ctx.chunk_size = scale, chunk_size
        ctx.g_dtype = g.dtype
        ctx.state_dtype = None if initial_state is None else initial_state.dtype
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, gc, h0 = ctx.saved_tensors
        dht = None if dht is None else dht.float().contiguous()
        dq, dk, dv, dg, dh0 = gla_backward(q, k, v, gc, ctx.scale, h0, ctx.chunk_size, do.contiguous(), dht)
        dh0 = None if ctx.state_dtype is None else dh0.to(ctx.state_dtype)
        return dq, dk, dv, dg.to(ctx.g_dtype), None, dh0, None, None
