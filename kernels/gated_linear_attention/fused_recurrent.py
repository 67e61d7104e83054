"""Triton fused recurrent gated linear attention for decoding: the state stays in registers across the T steps.

One program per (value block, sequence, head) holds the whole key dimension of its state slice, reads a token, decays
and updates the state, writes o_t, and stores the final state once (inference only: no backward).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.dispatch import block_size, is_interpreted

INTERPRETED = is_interpreted()


@triton.jit
def gla_fused_recurrent_kernel(
    q, k, v, g, o, h0, ht, scale, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr,
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    i_b, i_h = i_bh // H, i_bh % H
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    mask_k, mask_v = offs_k < K, offs_v < V
    state = (i_bh * K + offs_k[:, None]) * V + offs_v[None, :]
    mask_kv = mask_k[:, None] & mask_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_h += tl.load(h0 + state, mask=mask_kv, other=0.0).to(tl.float32)
    for t in range(T):
        row_k = ((i_b * T + t) * H + i_h) * K + offs_k
        row_v = ((i_b * T + t) * H + i_h) * V + offs_v
        b_q = tl.load(q + row_k, mask=mask_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(k + row_k, mask=mask_k, other=0.0).to(tl.float32)
        b_g = tl.load(g + row_k, mask=mask_k, other=0.0).to(tl.float32)
        b_v = tl.load(v + row_v, mask=mask_v, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], 0)
        tl.store(o + row_v, b_o.to(o.dtype.element_ty), mask=mask_v)
    if STORE_HT:
        tl.store(ht + state, b_h, mask=mask_kv)


def gla_fused_recurrent(q, k, v, g, scale, initial_state, output_final_state):
    B, T, H, K = q.shape
    V = v.shape[-1]
    q, k, v, g = q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous()
    h0 = None if initial_state is None else initial_state.float().contiguous()
    o = torch.empty_like(v)
    ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32) if output_final_state else None
    BV = min(32, block_size(V))
    gla_fused_recurrent_kernel[(triton.cdiv(V, BV), B * H)](
        q, k, v, g, o, h0, ht, scale, T,
        H=H, K=K, V=V, BK=block_size(K), BV=BV, USE_H0=h0 is not None, STORE_HT=output_final_state,
    )
    return o, ht
