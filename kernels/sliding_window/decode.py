"""Triton decode step: one new query token per sequence against a ring-buffer KV cache of W slots.

Each program serves one (sequence, query head) and scans the cache in blocks of slots. Every lane of a block keeps
its own running max, denominator and weighted sum (an online softmax per lane) and the lanes are merged once at the
end, so the loop carries only fixed-shape tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import block_size, is_interpreted

INTERPRETED = is_interpreted()
LOG2E = 1.4426950408889634


@triton.jit
def swa_decode_kernel(
    q, k_cache, v_cache, seen, o, scale_log2, WINDOW, SLOTS,
    HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, BD: tl.constexpr, BN: tl.constexpr,
):
    i_bh = tl.program_id(0)
    i_b = i_bh // HQ
    i_h = i_bh % HQ
    i_hk = i_h // (HQ // HKV)
    n_seen = tl.load(seen + i_b)

    offs_d = tl.arange(0, BD)
    mask_d = offs_d < D
    b_q = tl.load(q + i_bh * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    m_lane = tl.full([BN], -1e30, dtype=tl.float32)
    l_lane = tl.zeros([BN], dtype=tl.float32)
    acc = tl.zeros([BN, BD], dtype=tl.float32)
    for start in range(0, SLOTS, BN):
        slot = start + tl.arange(0, BN)
        written = (slot < n_seen) & (slot < SLOTS)
        # The slot holds position n_seen - 1 - age; it is in the window when age < WINDOW.
        age = tl.where(written, n_seen - 1 - slot, 0) % SLOTS
        inside = written & (age < WINDOW)
        ptr = ((i_b * SLOTS + slot[:, None]) * HKV + i_hk) * D + offs_d[None, :]
        mask = inside[:, None] & mask_d[None, :]
        b_k = tl.load(k_cache + ptr, mask=mask, other=0.0).to(tl.float32)
        b_v = tl.load(v_cache + ptr, mask=mask, other=0.0).to(tl.float32)
        s = tl.where(inside, tl.sum(b_k * b_q[None, :], 1) * scale_log2, float("-inf"))
        m_new = tl.maximum(m_lane, s)
        alpha = tl.exp2(m_lane - m_new)
        p = tl.exp2(s - m_new)
        l_lane = l_lane * alpha + p
        acc = acc * alpha[:, None] + p[:, None] * b_v
        m_lane = m_new

    m = tl.max(m_lane, 0)
    weight = tl.exp2(m_lane - m)
    out = tl.sum(acc * weight[:, None], 0) / tl.sum(l_lane * weight, 0)
    tl.store(o + i_bh * D + offs_d, out.to(o.dtype.element_ty), mask=mask_d)


def swa_decode(q, k_cache, v_cache, seen: torch.Tensor, window: int, scale: float) -> torch.Tensor:
    B, _, HQ, D = q.shape
    SLOTS, HKV = k_cache.shape[1], k_cache.shape[2]
    q, k_cache, v_cache = q.contiguous(), k_cache.contiguous(), v_cache.contiguous()
    o = torch.empty_like(q)
    BD = block_size(D)
    BN = min(64 if BD <= 64 else 32, block_size(SLOTS))
    swa_decode_kernel[(B * HQ,)](
        q, k_cache, v_cache, seen.to(torch.int32).contiguous(), o, scale * LOG2E, window, SLOTS,
        HQ=HQ, HKV=HKV, D=D, BD=BD, BN=BN,
    )
    return o
