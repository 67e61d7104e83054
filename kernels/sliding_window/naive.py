"""Plain-PyTorch sliding-window attention: the ground truth for the Triton kernels and the CPU path.

Query i attends keys j with i - window < j <= i. Layout [batch, time, heads, head_dim]; grouped-query attention
when q has more heads than k/v (each group of Hq // Hkv query heads shares one key/value head).
"""

from __future__ import annotations

import torch


def check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"sliding_window_attention: q, k, v must be [batch, time, heads, head_dim], got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"sliding_window_attention: k and v must both be [batch, time, kv_heads, head_dim] matching q "
            f"{tuple(q.shape)} in batch, time and head_dim, got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    if q.shape[2] % k.shape[2] != 0:
        raise ValueError(
            f"sliding_window_attention: q heads ({q.shape[2]}) must be a multiple of k/v heads ({k.shape[2]}) "
            f"for grouped-query attention"
        )
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"sliding_window_attention: window must be a positive int (tokens attended), got {window!r}")


def sliding_window_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float | None = None
) -> torch.Tensor:
    """Causal attention over the last `window` keys, computed in fp32 one query block at a time.

    Blocks of max(window, 128) queries see at most 2 blocks of keys, so memory grows as T * window, not T^2.
    """
    check_attention_inputs(q, k, v, window)
    B, T, Hq, D = q.shape
    group = Hq // k.shape[2]
    scale = D**-0.5 if scale is None else scale
    k = k.repeat_interleave(group, dim=2).float()
    v = v.repeat_interleave(group, dim=2).float()
    qf = q.float()
    block = max(window, 128)
    outputs = []
    for start in range(0, T, block):
        end = min(T, start + block)
        key_start = max(0, start - window + 1)
        scores = torch.einsum("bihd,bjhd->bhij", qf[:, start:end], k[:, key_start:end]) * scale
        i = torch.arange(start, end, device=q.device)[:, None]
        j = torch.arange(key_start, end, device=q.device)[None, :]
        scores = scores.masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
        outputs.append(torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v[:, key_start:end]))
    return torch.cat(outputs, dim=1).to(q.dtype)


def check_decode_inputs(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seen: torch.Tensor, window: int
) -> None:
    if q.dim() != 4 or q.shape[1] != 1 or k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(
            f"sliding_window_decode: q must be one token [batch, 1, heads, head_dim] and k_cache/v_cache both "
            f"[batch, slots, kv_heads, head_dim], got {tuple(q.shape)}, {tuple(k_cache.shape)}, {tuple(v_cache.shape)}"
        )
    B, W, Hkv, D = k_cache.shape
    if q.shape[0] != B or q.shape[3] != D or q.shape[2] % Hkv != 0:
        raise ValueError(
            f"sliding_window_decode: q {tuple(q.shape)} must match the cache {tuple(k_cache.shape)} in batch and "
            f"head_dim, with q heads a multiple of kv heads"
        )
    if seen.shape != (B,):
        raise ValueError(f"sliding_window_decode: seen must hold one count per sequence, shape ({B},), got {tuple(seen.shape)}")
    if not isinstance(window, int) or not 1 <= window <= W:
        raise ValueError(
            f"sliding_window_decode: window ({window!r}) must be an int in [1, {W}]: the ring buffer must hold the "
            f"whole window; allocate the cache with at least `window` slots"
        )
    if bool((seen < 1).any()):
        raise ValueError(
            "sliding_window_decode: seen counts the tokens written so far including the new one, so it must be >= 1; "
            "write the new token's k/v at slot (seen - 1) % slots before calling"
        )


def as_seen_tensor(seen: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(seen, int):
        return torch.full((batch,), seen, dtype=torch.int64, device=device)
    return seen.to(device=device, dtype=torch.int64)


def ring_buffer_mask(seen: torch.Tensor, slots: int, window: int) -> torch.Tensor:
    """[B, slots] True where a slot holds one of the last `window` positions.

    Slot s holds the most recent position p < seen with p % slots == s, i.e. p = seen - 1 - age with
    age = (seen - 1 - s) mod slots; it is attended when it was written (s < seen) and age < window.
    """
    s = torch.arange(slots, device=seen.device)[None, :]
    age = (seen[:, None] - 1 - s) % slots
    return (s < seen[:, None]) & (age < window)


def sliding_window_decode_ref(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seen: int | torch.Tensor,
    window: int,
    scale: float | None = None,
) -> torch.Tensor:
    """One query token per sequence against a ring-buffer cache.

    q [B, 1, Hq, D]; k_cache, v_cache [B, W, Hkv, D]; `seen` [B] (or an int for all) counts the tokens written so
    far *including* the new one, whose k/v the caller has already stored at slot (seen - 1) % W. Returns
    [B, 1, Hq, D].
    """
    seen = as_seen_tensor(seen, q.shape[0], q.device)
    check_decode_inputs(q, k_cache, v_cache, seen, window)
    B, W, Hkv, D = k_cache.shape
    group = q.shape[2] // Hkv
    scale = D**-0.5 if scale is None else scale
    k = k_cache.repeat_interleave(group, dim=2).float()
    v = v_cache.repeat_interleave(group, dim=2).float()
    scores = torch.einsum("bhd,bshd->bhs", q[:, 0].float(), k) * scale
    scores = scores.masked_fill(~ring_buffer_mask(seen, W, window)[:, None, :], float("-inf"))
    return torch.einsum("bhs,bshd->bhd", scores.softmax(-1), v)[:, None].to(q.dtype)
