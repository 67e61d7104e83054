"""What both student families share: packed-row segments, padding checks, the causal-LM head's loss and cache sizes."""

from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast


def segment_bounds(cu_seqlens: torch.Tensor | None, length: int) -> list[tuple[int, int]]:
    """(start, end) of every document in a packed row; the whole row when cu_seqlens is None.

    cu_seqlens follows flash-attn varlen: [0, end_1, end_2, ..., length], strictly increasing.
    """
    if cu_seqlens is None:
        return [(0, length)]
    bounds = [int(x) for x in cu_seqlens.tolist()]
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != length or any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(
            f"cu_seqlens must rise strictly from 0 to the row length {length}, got {bounds}; "
            "build it as the cumulative document lengths with a leading 0"
        )
    return list(zip(bounds, bounds[1:]))


def packed_position_ids(cu_seqlens: torch.Tensor, length: int, device: torch.device) -> torch.Tensor:
    """Positions that restart at 0 at every document boundary, shape [1, length]."""
    pieces = [torch.arange(end - start, device=device) for start, end in segment_bounds(cu_seqlens, length)]
    return torch.cat(pieces).unsqueeze(0)


def check_inputs(
    batch_size: int, attention_mask: torch.Tensor | None, cu_seqlens: torch.Tensor | None, has_cache: bool
) -> None:
    """Reject inputs a constant-memory student cannot honour, with the fix in the message.

    The token mixers have no padding mask: right padding is harmless (causal models never look ahead, and the
    caller masks the pad positions' labels with -100), left padding is not. Documents are packed with cu_seqlens.
    """
    if cu_seqlens is not None:
        if batch_size != 1:
            raise ValueError(f"cu_seqlens describes one packed row, but the batch has {batch_size} rows; pack into batch 1")
        if has_cache:
            raise ValueError("cu_seqlens packs documents for training; it cannot be combined with a cache (decode one document)")
    if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[1] > 1:
        mask = attention_mask.bool()
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError(
                "attention_mask has padding before real tokens (left padding); these students support right padding "
                "only: pad on the right, or pack documents into one row with cu_seqlens"
            )
        if has_cache and not mask.all():
            raise ValueError("a padded batch cannot continue a cache: pad tokens would enter the recurrent state")


def cache_nbytes(cache) -> int:
    """Bytes of keys and values (or recurrent states) a cache holds: GLA's state, or a transformers Cache."""
    if cache is None:
        return 0
    if hasattr(cache, "nbytes"):
        return int(cache.nbytes)
    total = 0
    for layer in getattr(cache, "layers", []):
        for value in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


def wants_cache(use_cache: bool | None, config, training: bool, cu_seqlens: torch.Tensor | None) -> bool:
    if use_cache is not None:
        return use_cache
    # A cache only pays off when decoding; training on packed rows never wants one.
    return bool(config.use_cache) and not training and cu_seqlens is None


def causal_lm_output(
    model, hidden_states, cache, labels, logits_to_keep: int, num_items_in_batch=None
) -> CausalLMOutputWithPast:
    """The LM head and, when labels are given, the HF causal-LM loss (labels shifted inside, -100 ignored)."""
    logits = model.lm_head(hidden_states[:, -logits_to_keep:] if logits_to_keep else hidden_states)
    loss = None
    if labels is not None:
        loss = model.loss_function(
            logits=logits, labels=labels, vocab_size=model.config.vocab_size, num_items_in_batch=num_items_in_batch
        )
    return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache)
