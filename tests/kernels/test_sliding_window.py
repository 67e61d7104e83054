"""Sliding-window attention: Triton forward, backward and ring-buffer decode against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from kernels import sliding_window_attention, sliding_window_decode
from kernels.sliding_window import sliding_window_attention_ref, sliding_window_decode_ref
from tests.kernels.conftest import DEVICE, DTYPES, assert_close


def dense_window_attention(q, k, v, window):
    """The definition, written independently of the reference: a full T x T masked softmax."""
    T, group = q.shape[1], q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * q.shape[-1] ** -0.5
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    scores = scores.masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)


def qkv(B, T, Hq, Hkv, D, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, h, D, generator=gen).to(DEVICE, dtype) for h in (Hq, Hkv, Hkv)]


def test_reference_matches_the_dense_definition_across_its_query_blocks():
    q, k, v = qkv(2, 300, 4, 2, 8, torch.float32)  # 300 queries: three blocks of 128 in the reference
    for window in (1, 50, 200, 400):
        expected = dense_window_attention(q.cpu(), k.cpu(), v.cpu(), window)
        assert_close(sliding_window_attention_ref(q, k, v, window), expected, torch.float32, f"window {window}")


def test_window_of_one_returns_each_tokens_own_value():
    q, k, v = qkv(1, 24, 2, 2, 16, torch.float32)
    assert_close(sliding_window_attention(q, k, v, 1), v, torch.float32, "window 1")


# (T, window, Hq, Hkv, D): window dividing T, not dividing T, longer than T, GQA, head_dim not a power of two.
SHAPES = [(64, 16, 2, 2, 16), (45, 12, 2, 1, 16), (20, 32, 2, 2, 32), (37, 7, 4, 2, 24)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T, window, Hq, Hkv, D", SHAPES)
def test_forward_and_gradients_match_reference(T, window, Hq, Hkv, D, dtype):
    q, k, v = (x.requires_grad_() for x in qkv(2, T, Hq, Hkv, D, dtype))
    o = sliding_window_attention(q, k, v, window)
    do = torch.randn_like(o)
    o.backward(do)
    got = [o, q.grad, k.grad, v.grad]

    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    o32 = sliding_window_attention_ref(q32, k32, v32, window)
    o32.backward(do.float())
    for name, actual, expected in zip(("o", "dq", "dk", "dv"), got, [o32, q32.grad, k32.grad, v32.grad]):
        assert actual.dtype == dtype
        assert_close(actual, expected, dtype, name)


def test_custom_scale_is_applied():
    q, k, v = qkv(1, 33, 2, 1, 16, torch.float32)
    assert_close(
        sliding_window_attention(q, k, v, 9, scale=0.3),
        sliding_window_attention_ref(q, k, v, 9, scale=0.3),
        torch.float32,
        "o",
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("slots, window", [(8, 8), (12, 8)])
def test_decode_over_a_ring_buffer_equals_the_full_forward(slots, window, dtype):
    B, T, Hq, Hkv, D = 2, 20, 4, 2, 16
    q, k, v = qkv(B, T, Hq, Hkv, D, dtype, seed=1)
    full = sliding_window_attention_ref(q, k, v, window)
    k_cache = torch.zeros(B, slots, Hkv, D, dtype=dtype, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    for pos in range(T):  # runs well past the window, so every slot is overwritten several times
        k_cache[:, pos % slots], v_cache[:, pos % slots] = k[:, pos], v[:, pos]
        o = sliding_window_decode(q[:, pos : pos + 1], k_cache, v_cache, pos + 1, window)
        assert o.shape == (B, 1, Hq, D)
        assert_close(o, full[:, pos : pos + 1], dtype, f"decode at position {pos}")


def test_decode_serves_sequences_at_different_positions():
    Hq, Hkv, D, window = 2, 1, 16, 6
    q, k, v = qkv(2, 20, Hq, Hkv, D, torch.float32, seed=2)
    full = sliding_window_attention_ref(q, k, v, window)
    seen = torch.tensor([20, 9])
    k_cache = torch.zeros(2, window, Hkv, D, device=DEVICE)
    v_cache = torch.zeros_like(k_cache)
    for b in range(2):
        for pos in range(int(seen[b])):
            k_cache[b, pos % window], v_cache[b, pos % window] = k[b, pos], v[b, pos]
    step_q = torch.stack([q[0, 19:20], q[1, 8:9]])
    o = sliding_window_decode(step_q, k_cache, v_cache, seen.to(DEVICE), window)
    expected = torch.stack([full[0, 19:20], full[1, 8:9]])
    assert_close(o, expected, torch.float32, "decode")
    assert_close(sliding_window_decode_ref(step_q, k_cache, v_cache, seen, window), expected, torch.float32, "ref")


def test_bad_inputs_name_the_field_and_the_fix():
    q, k, v = qkv(1, 8, 3, 2, 16, torch.float32)
    with pytest.raises(ValueError, match="multiple of k/v heads"):
        sliding_window_attention(q, k, v, 4)
    q, k, v = qkv(1, 8, 2, 2, 16, torch.float32)
    with pytest.raises(ValueError, match="window must be a positive int"):
        sliding_window_attention(q, k, v, 0)
    cache = torch.zeros(1, 4, 2, 16, device=DEVICE)
    with pytest.raises(ValueError, match="at least `window` slots"):
        sliding_window_decode(q[:, :1], cache, cache, 3, 8)
    with pytest.raises(ValueError, match="including the new one"):
        sliding_window_decode(q[:, :1], cache, cache, 0, 4)
