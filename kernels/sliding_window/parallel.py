"""Triton flash-style sliding-window attention, forward and backward.

Online softmax in base 2 over only the key blocks that intersect the window of the query block; fp32 accumulation
for fp32 / fp16 / bf16 inputs. The forward saves the base-2 logsumexp of each row, so the backward recomputes the
probabilities instead of storing them. The backward runs two kernels (dq over query blocks; dk, dv over key blocks,
looping over the query heads of a group) so that nothing is accumulated with atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import block_size, dot_precision, is_interpreted

INTERPRETED = is_interpreted()
LOG2E = 1.4426950408889634


@triton.jit
def swa_fwd_kernel(
    q, k, v, o, lse, scale_log2, T, WINDOW,
    HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
):
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // HQ
    i_h = i_bh % HQ
    i_hk = i_h // (HQ // HKV)

    offs_m = i_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    mask_m = offs_m < T
    mask_d = offs_d < D
    b_q = tl.load(q + ((i_b * T + offs_m[:, None]) * HQ + i_h) * D + offs_d[None, :],
                  mask=mask_m[:, None] & mask_d[None, :], other=0.0)

    m_i = tl.full([BM], -1e30, dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BD], dtype=tl.float32)

    # Key blocks from the first one the window of the block's first query reaches, to the block's last query.
    lo = (tl.maximum(i_m * BM - WINDOW + 1, 0) // BN) * BN
    hi = tl.minimum((i_m + 1) * BM, T)
    for start_n in range(lo, hi, BN):
        offs_n = start_n + tl.arange(0, BN)
        mask_n = offs_n < T
        b_kt = tl.load(k + ((i_b * T + offs_n[None, :]) * HKV + i_hk) * D + offs_d[:, None],
                       mask=mask_n[None, :] & mask_d[:, None], other=0.0)
        b_v = tl.load(v + ((i_b * T + offs_n[:, None]) * HKV + i_hk) * D + offs_d[None, :],
                      mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        s = tl.dot(b_q, b_kt, input_precision=PRECISION) * scale_log2
        inside = ((offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] > offs_m[:, None] - WINDOW)
                  & mask_n[None, :])
        s = tl.where(inside, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(b_v.dtype), b_v, input_precision=PRECISION)
        m_i = m_new

    # Only padding rows past T have an empty window (l_i == 0); they are not stored.
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    acc = acc / l_safe[:, None]
    tl.store(o + ((i_b * T + offs_m[:, None]) * HQ + i_h) * D + offs_d[None, :], acc.to(o.dtype.element_ty),
             mask=mask_m[:, None] & mask_d[None, :])
    tl.store(lse + i_bh * T + offs_m, m_i + tl.log2(l_safe), mask=mask_m)


@triton.jit
def swa_bwd_dq_kernel(
    q, k, v, do, lse, delta, dq, scale_log2, scale, T, WINDOW,
    HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
):
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // HQ
    i_h = i_bh % HQ
    i_hk = i_h // (HQ // HKV)

    offs_m = i_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BD)
    mask_m = offs_m < T
    mask_d = offs_d < D
    row = ((i_b * T + offs_m[:, None]) * HQ + i_h) * D + offs_d[None, :]
    mask_md = mask_m[:, None] & mask_d[None, :]
    b_q = tl.load(q + row, mask=mask_md, other=0.0)
    b_do = tl.load(do + row, mask=mask_md, other=0.0)
    b_lse = tl.load(lse + i_bh * T + offs_m, mask=mask_m, other=0.0)
    b_delta = tl.load(delta + i_bh * T + offs_m, mask=mask_m, other=0.0)
    b_dq = tl.zeros([BM, BD], dtype=tl.float32)

    lo = (tl.maximum(i_m * BM - WINDOW + 1, 0) // BN) * BN
    hi = tl.minimum((i_m + 1) * BM, T)
    for start_n in range(lo, hi, BN):
        offs_n = start_n + tl.arange(0, BN)
        mask_n = offs_n < T
        kv_t = ((i_b * T + offs_n[None, :]) * HKV + i_hk) * D + offs_d[:, None]
        b_kt = tl.load(k + kv_t, mask=mask_n[None, :] & mask_d[:, None], other=0.0)
        b_vt = tl.load(v + kv_t, mask=mask_n[None, :] & mask_d[:, None], other=0.0)
        s = tl.dot(b_q, b_kt, input_precision=PRECISION) * scale_log2
        inside = ((offs_n[None, :] <= offs_m[:, None]) & (offs_n[None, :] > offs_m[:, None] - WINDOW)
                  & mask_n[None, :] & mask_m[:, None])
        p = tl.where(inside, tl.exp2(s - b_lse[:, None]), 0.0)
        dp = tl.dot(b_do, b_vt, input_precision=PRECISION)
        ds = p * (dp - b_delta[:, None])
        b_dq += tl.dot(ds.to(b_kt.dtype), tl.trans(b_kt), input_precision=PRECISION)

    tl.store(dq + row, (b_dq * scale).to(dq.dtype.element_ty), mask=mask_md)


@triton.jit
def swa_bwd_dkdv_kernel(
    q, k, v, do, lse, delta, dk, dv, scale_log2, scale, T, WINDOW,
    HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, BD: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
):
    i_n = tl.program_id(0)
    i_bhk = tl.program_id(1)
    i_b = i_bhk // HKV
    i_hk = i_bhk % HKV
    GROUP: tl.constexpr = HQ // HKV

    offs_n = i_n * BN + tl.arange(0, BN)
    offs_d = tl.arange(0, BD)
    mask_n = offs_n < T
    mask_d = offs_d < D
    kv = ((i_b * T + offs_n[:, None]) * HKV + i_hk) * D + offs_d[None, :]
    mask_nd = mask_n[:, None] & mask_d[None, :]
    b_k = tl.load(k + kv, mask=mask_nd, other=0.0)
    b_v = tl.load(v + kv, mask=mask_nd, other=0.0)
    b_dk = tl.zeros([BN, BD], dtype=tl.float32)
    b_dv = tl.zeros([BN, BD], dtype=tl.float32)

    # Query blocks whose windows reach this key block: from the block holding its first key to its last key + W - 1.
    lo = (i_n * BN // BM) * BM
    hi = tl.minimum((i_n + 1) * BN + WINDOW - 1, T)
    for g in range(GROUP):
        i_h = i_hk * GROUP + g
        for start_m in range(lo, hi, BM):
            offs_m = start_m + tl.arange(0, BM)
            mask_m = offs_m < T
            row_t = ((i_b * T + offs_m[None, :]) * HQ + i_h) * D + offs_d[:, None]
            b_qt = tl.load(q + row_t, mask=mask_m[None, :] & mask_d[:, None], other=0.0)
            b_dot = tl.load(do + row_t, mask=mask_m[None, :] & mask_d[:, None], other=0.0)
            b_lse = tl.load(lse + (i_b * HQ + i_h) * T + offs_m, mask=mask_m, other=0.0)
            b_delta = tl.load(delta + (i_b * HQ + i_h) * T + offs_m, mask=mask_m, other=0.0)
            # Transposed scores: rows are keys, columns are queries.
            st = tl.dot(b_k, b_qt, input_precision=PRECISION) * scale_log2
            inside = ((offs_n[:, None] <= offs_m[None, :]) & (offs_n[:, None] > offs_m[None, :] - WINDOW)
                      & mask_n[:, None] & mask_m[None, :])
            pt = tl.where(inside, tl.exp2(st - b_lse[None, :]), 0.0)
            b_dv += tl.dot(pt.to(b_dot.dtype), tl.trans(b_dot), input_precision=PRECISION)
            dpt = tl.dot(b_v, b_dot, input_precision=PRECISION)
            dst = pt * (dpt - b_delta[None, :])
            b_dk += tl.dot(dst.to(b_qt.dtype), tl.trans(b_qt), input_precision=PRECISION)

    tl.store(dk + kv, (b_dk * scale).to(dk.dtype.element_ty), mask=mask_nd)
    tl.store(dv + kv, b_dv.to(dv.dtype.element_ty), mask=mask_nd)


def _tiles(T: int, D: int) -> tuple[int, int, int]:
    BD = block_size(D)
    tile = 64 if BD <= 64 else 32
    tile = min(tile, block_size(T))
    return BD, tile, tile


def swa_forward(q, k, v, window: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    B, T, HQ, D = q.shape
    HKV = k.shape[2]
    BD, BM, BN = _tiles(T, D)
    o = torch.empty_like(q)
    lse = torch.empty(B, HQ, T, device=q.device, dtype=torch.float32)
    grid = (triton.cdiv(T, BM), B * HQ)
    swa_fwd_kernel[grid](
        q, k, v, o, lse, scale * LOG2E, T, window,
        HQ=HQ, HKV=HKV, D=D, BD=BD, BM=BM, BN=BN, PRECISION=dot_precision(q.dtype),
    )
    return o, lse


def swa_backward(q, k, v, o, lse, do, window: int, scale: float):
    B, T, HQ, D = q.shape
    HKV = k.shape[2]
    BD, BM, BN = _tiles(T, D)
    delta = (do.float() * o.float()).sum(-1).transpose(1, 2).contiguous()
    dq = torch.empty_like(q)
    dk = torch.empty_like(k)
    dv = torch.empty_like(v)
    precision = dot_precision(q.dtype)
    swa_bwd_dq_kernel[(triton.cdiv(T, BM), B * HQ)](
        q, k, v, do, lse, delta, dq, scale * LOG2E, scale, T, window,
        HQ=HQ, HKV=HKV, D=D, BD=BD, BM=BM, BN=BN, PRECISION=precision,
    )
    swa_bwd_dkdv_kernel[(triton.cdiv(T, BN), B * HKV)](
        q, k, v, do, lse, delta, dk, dv, scale * LOG2E, scale, T, window,
        HQ=HQ, HKV=HKV, D=D, BD=BD, BM=BM, BN=BN, PRECISION=precision,
    )
    return dq, dk, dv


class SlidingWindowAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window: int, scale: float):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        o, lse = swa_forward(q, k, v, window, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.window = window
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = swa_backward(q, k, v, o, lse, do.contiguous(), ctx.window, ctx.scale)
        return dq, dk, dv, None, None

