"""The Triton sliding-window kernel behind transformers' AttentionInterface ("smooth_reading_swa"): a stock
sliding-window student gives the same logits and gradients through it as through SDPA with transformers' own
sliding-window mask, on whole rows, on packed rows and when continuing a cache."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from students.swa import SWA_ATTENTION, sliding_window_config, use_sliding_window_kernel
from tests.kernels.conftest import DEVICE, assert_close

WINDOW = 12


def tiny_student(qkv_bias: bool):
    torch.manual_seed(0)
    config = sliding_window_config(
        WINDOW, qkv_bias=qkv_bias, vocab_size=61, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=12,
    )
    return AutoModelForCausalLM.from_config(config).to(DEVICE).eval()


def logits_and_grads(model, **inputs):
    model.zero_grad()
    out = model(**inputs, use_cache=False)
    out.logits.float().square().mean().backward()
    layer = model.model.layers[0].self_attn
    return out.logits.detach(), layer.q_proj.weight.grad.clone(), layer.v_proj.weight.grad.clone()


@pytest.mark.parametrize("qkv_bias", [False, True], ids=["mistral", "qwen2"])
def test_kernel_attention_equals_sdpa_with_the_window_mask(qkv_bias):
    model = tiny_student(qkv_bias)
    ids = torch.randint(0, 61, (2, 45), generator=torch.Generator().manual_seed(1)).to(DEVICE)  # 45: not a block multiple
    expected = logits_and_grads(model, input_ids=ids)
    use_sliding_window_kernel(model)
    assert model.config._attn_implementation == SWA_ATTENTION
    for name, got, want in zip(("logits", "dq_proj", "dv_proj"), logits_and_grads(model, input_ids=ids), expected):
        assert_close(got, want, torch.float32, name)


def test_kernel_attention_keeps_packed_documents_apart():
    model = tiny_student(False)
    lengths = (7, 2 * WINDOW + 5, 13)
    ids = torch.randint(0, 61, (1, sum(lengths)), generator=torch.Generator().manual_seed(2)).to(DEVICE)
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0).to(DEVICE)
    expected = logits_and_grads(model, input_ids=ids, position_ids=positions)  # SDPA: mask built from position_ids
    use_sliding_window_kernel(model)
    cu = torch.tensor([0, 7, 7 + lengths[1], sum(lengths)], dtype=torch.int32, device=DEVICE)
    for inputs in ({"position_ids": positions}, {"position_ids": positions, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu}):
        got = logits_and_grads(model, input_ids=ids, **inputs)
        for name, g, w in zip(("logits", "dq_proj", "dv_proj"), got, expected):
            assert_close(g, w, torch.float32, f"packed {name} ({sorted(inputs)})")


def test_kernel_model_continues_a_cache_chunk_by_chunk():
    model = tiny_student(False)
    ids = torch.randint(0, 61, (1, 40), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        use_sliding_window_kernel(model)
        cache, pieces, start = DynamicCache(config=model.config), [], 0
        for size in (9, 1, 17, 1, 12):
            pieces.append(model(ids[:, start:start + size], past_key_values=cache, use_cache=True).logits)
            start += size
    assert_close(torch.cat(pieces, dim=1), full, torch.float32, "chunked logits")
