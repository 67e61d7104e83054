"""Gated linear attention: Triton chunk and fused recurrent kernels against the step-by-step recurrence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import chunk_gated_linear_attention, fused_recurrent_gated_linear_attention
from kernels.gated_linear_attention import gla_chunk_ref, gla_recurrent_ref
from tests.kernels.conftest import DEVICE, DTYPES, assert_close


def inputs(B, T, H, K, V, dtype, seed=0, gate_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, generator=gen).to(DEVICE, dtype) for _ in range(2))
    v = torch.randn(B, T, H, V, generator=gen).to(DEVICE, dtype)
    g = (F.logsigmoid(torch.randn(B, T, H, K, generator=gen) * 2) * gate_scale).to(DEVICE)
    h0 = torch.randn(B, H, K, V, generator=gen).to(DEVICE)
    return q, k, v, g, h0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("chunk_size, T, with_state", [(16, 40, True), (32, 40, False), (64, 70, True), (64, 20, False)])
def test_chunk_forward_and_gradients_match_the_recurrence(chunk_size, T, with_state, dtype):
    q, k, v, g, h0 = inputs(1, T, 2, 16, 32, dtype)
    h0 = h0 if with_state else None
    leaves = [x.requires_grad_() for x in (q, k, v, g, h0) if x is not None]
    o, ht = chunk_gated_linear_attention(q, k, v, g, initial_state=h0, output_final_state=True, chunk_size=chunk_size)
    do, dht = torch.randn_like(o), torch.randn_like(ht)
    ((o.float() * do.float()).sum() + (ht * dht).sum()).backward()
    got = [o, ht] + [x.grad for x in leaves]

    ref_leaves = [x.detach().float().requires_grad_() for x in leaves]
    rq, rk, rv, rg = ref_leaves[:4]
    rh0 = ref_leaves[4] if with_state else None
    ro, rht = gla_recurrent_ref(rq, rk, rv, rg, initial_state=rh0, output_final_state=True)
    ((ro * do.float()).sum() + (rht * dht).sum()).backward()
    expected = [ro, rht] + [x.grad for x in ref_leaves]

    names = ["o", "final_state", "dq", "dk", "dv", "dg", "d_initial_state"]
    for name, actual, want in zip(names, got, expected):
        assert_close(actual, want, dtype, name)
    assert o.dtype == dtype and ht.dtype == torch.float32 and g.grad.dtype == g.dtype


def test_strong_forget_gates_stay_finite_and_exact():
    # Gates near -8 per step: within a chunk of 64 the cumulative decay reaches e^-500, far past fp32's range, so
    # only a log-space-stable chunk form can be exact here.
    q, k, v, g, h0 = inputs(1, 64, 2, 16, 16, torch.float32, seed=3, gate_scale=8.0)
    expected, expected_state = gla_recurrent_ref(q, k, v, g, initial_state=h0, output_final_state=True)
    o, ht = chunk_gated_linear_attention(q, k, v, g, initial_state=h0, output_final_state=True)
    assert_close(o, expected, torch.float32, "o (Triton)")
    assert_close(ht, expected_state, torch.float32, "final_state (Triton)")
    o, ht = gla_chunk_ref(q, k, v, g, initial_state=h0, output_final_state=True)
    assert_close(o, expected, torch.float32, "o (PyTorch chunked)")
    assert_close(ht, expected_state, torch.float32, "final_state (PyTorch chunked)")


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_pytorch_chunked_form_equals_the_recurrence(chunk_size):
    q, k, v, g, h0 = inputs(2, 50, 2, 8, 12, torch.float32, seed=4)
    for state in (None, h0):
        o, ht = gla_chunk_ref(q, k, v, g, initial_state=state, output_final_state=True, chunk_size=chunk_size)
        ro, rht = gla_recurrent_ref(q, k, v, g, initial_state=state, output_final_state=True)
        assert_close(o, ro, torch.float32, "o")
        assert_close(ht, rht, torch.float32, "final_state")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reading_in_two_halves_with_the_carried_state_equals_one_run(dtype):
    q, k, v, g, _ = inputs(1, 60, 2, 16, 16, dtype, seed=5)
    whole, whole_state = chunk_gated_linear_attention(q, k, v, g, output_final_state=True, chunk_size=32)
    first, state = chunk_gated_linear_attention(q[:, :23], k[:, :23], v[:, :23], g[:, :23], output_final_state=True)
    second, final = chunk_gated_linear_attention(
        q[:, 23:], k[:, 23:], v[:, 23:], g[:, 23:], initial_state=state, output_final_state=True
    )
    assert_close(torch.cat([first, second], 1), whole, dtype, "o")
    assert_close(final, whole_state, dtype, "final_state")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_recurrent_decoding_continues_a_chunked_prefill(dtype):
    q, k, v, g, h0 = inputs(2, 40, 2, 16, 32, dtype, seed=6)
    expected, expected_state = gla_recurrent_ref(q, k, v, g, initial_state=h0, output_final_state=True)
    with torch.no_grad():
        o, state = chunk_gated_linear_attention(q[:, :33], k[:, :33], v[:, :33], g[:, :33], initial_state=h0,
                                                output_final_state=True)
        steps = [o]
        for t in range(33, 36):  # one token at a time
            o, state = fused_recurrent_gated_linear_attention(
                q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1], g[:, t : t + 1], initial_state=state,
                output_final_state=True,
            )
            steps.append(o)
        o, state = fused_recurrent_gated_linear_attention(  # then a short run of 4
            q[:, 36:], k[:, 36:], v[:, 36:], g[:, 36:], initial_state=state, output_final_state=True
        )
        steps.append(o)
    assert_close(torch.cat(steps, 1), expected, dtype, "o")
    assert_close(state, expected_state, dtype, "final_state")


def test_without_output_final_state_no_state_is_returned():
    q, k, v, g, _ = inputs(1, 8, 1, 16, 16, torch.float32)
    assert chunk_gated_linear_attention(q, k, v, g)[1] is None
    assert fused_recurrent_gated_linear_attention(q, k, v, g)[1] is None


def test_bad_inputs_name_the_field_and_the_fix():
    q, k, v, g, h0 = inputs(1, 8, 2, 16, 16, torch.float32)
    with pytest.raises(ValueError, match="pass the final_state of the previous call"):
        chunk_gated_linear_attention(q, k, v, g, initial_state=h0[:, :1])
    with pytest.raises(ValueError, match="share one shape"):
        chunk_gated_linear_attention(q, k[..., :8], v, g)
    with pytest.raises(ValueError, match="chunk_size must be one of"):
        chunk_gated_linear_attention(q, k, v, g, chunk_size=48)
    with pytest.raises(ValueError, match="use chunk_gated_linear_attention"):
        fused_recurrent_gated_linear_attention(q.requires_grad_(), k, v, g)
