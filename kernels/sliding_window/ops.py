"""Public sliding-window attention: Triton on CUDA or under TRITON_INTERPRET=1, the PyTorch reference otherwise."""

from __future__ import annotations

import torch

from kernels.dispatch import triton_module, use_triton
from kernels.sliding_window.naive import (
    as_seen_tensor,
    check_attention_inputs,
    check_decode_inputs,
    sliding_window_attention_ref,
    sliding_window_decode_ref,
)


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float | None = None
) -> torch.Tensor:
    """Causal attention where query i sees keys i - window < j <= i.

    q [B, T, Hq, D], k/v [B, T, Hkv, D] with Hq a multiple of Hkv; returns [B, T, Hq, D] in q's dtype.
    Differentiable in q, k, v.
    """
    check_attention_inputs(q, k, v, window)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return sliding_window_attention_ref(q, k, v, window, scale)
    parallel = triton_module("kernels.sliding_window.parallel")
    return parallel.SlidingWindowAttentionFunction.apply(q, k, v, window, scale)


def sliding_window_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seen: int | torch.Tensor,
    window: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of one new token per sequence over a ring-buffer cache (inference only).

    q [B, 1, Hq, D]; k_cache/v_cache [B, W, Hkv, D]. `seen` [B] (or one int) counts the tokens written so far
    including the new one, whose k/v must already be stored at slot (seen - 1) % W. Returns [B, 1, Hq, D].
    """
    seen = as_seen_tensor(seen, q.shape[0], q.device)
    check_decode_inputs(q, k_cache, v_cache, seen, window)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return sliding_window_decode_ref(q, k_cache, v_cache, seen, window, scale)
    return triton_module("kernels.sliding_window.decode").swa_decode(q, k_cache, v_cache, seen, window, scale)
