"""The two student families: cached decoding, packed rows, loss, checkpoints, generation.

The sliding-window student is a stock architecture: Qwen2 here (q/k/v biases), Mistral in test_convert.py."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from students import (
    GatedLinearAttentionConfig,
    GatedLinearAttentionForCausalLM,
    sliding_window_config,
    use_sliding_window_kernel,
)
from students.common import cache_nbytes
from students.reading import constant_cache
from students.train import packed_row_inputs

WINDOW = 6
VOCAB = 97


def tiny_swa(**overrides):
    torch.manual_seed(0)
    config = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, eos_token_id=1,
    )
    model = AutoModelForCausalLM.from_config(sliding_window_config(WINDOW, qkv_bias=True, **{**config, **overrides}))
    with torch.no_grad():  # fresh biases are zeros; make them matter
        for layer in model.model.layers:
            layer.self_attn.k_proj.bias.normal_()
    return model.eval()


def tiny_gla(**overrides) -> GatedLinearAttentionForCausalLM:
    torch.manual_seed(0)
    config = dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        eos_token_id=1,
    )
    model = GatedLinearAttentionForCausalLM(GatedLinearAttentionConfig(**{**config, **overrides})).eval()
    with torch.no_grad():  # strong, varied decay so that a wrong state carry shows up in the logits
        for layer in model.model.layers:
            layer.self_attn.gk_proj[1].bias.uniform_(-3.0, 3.0)
    return model


FAMILIES = {"swa": tiny_swa, "gla": tiny_gla}


def read_in_pieces(model, ids: torch.Tensor, sizes: list[int]):
    logits, cache, start = [], constant_cache(model), 0
    bytes_after = []
    for size in sizes:
        out = model(ids[:, start : start + size], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits.append(out.logits)
        bytes_after.append(cache_nbytes(cache))
        start += size
    assert start == ids.shape[1]
    return torch.cat(logits, dim=1), bytes_after


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sizes", [[1] * 20, [3, 1, 7, 1, 1, 5, 2], [13, 7]], ids=["tokenwise", "mixed", "chunks"])
def test_cached_reading_matches_one_full_forward_past_the_window(family, sizes):
    model = FAMILIES[family]()
    ids = torch.randint(2, VOCAB, (2, sum(sizes)), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        pieces, bytes_after = read_in_pieces(model, ids, sizes)
    assert sum(sizes) > 3 * WINDOW
    torch.testing.assert_close(pieces, full, atol=2e-5, rtol=1e-4)
    assert len(set(bytes_after)) == 1 and bytes_after[0] > 0  # the cache never grows


def test_sliding_window_forgets_tokens_older_than_the_window():
    model = tiny_swa()
    ids = torch.randint(2, VOCAB, (1, 3 * WINDOW), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % VOCAB  # visible to layer 1 up to position W-1, to layer 2 up to 2W-2
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert not torch.allclose(a[0, : WINDOW], b[0, : WINDOW])
    torch.testing.assert_close(a[0, 2 * WINDOW - 1 :], b[0, 2 * WINDOW - 1 :])


def packed_inputs(model, docs: list[torch.Tensor]) -> dict:
    """A packed row as the training loop feeds it (students.data.PackedRow -> students.train.packed_row_inputs)."""
    lengths = [doc.shape[1] for doc in docs]
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    row = {"input_ids": torch.cat(docs, dim=1), "position_ids": position_ids, "cu_seqlens": cu_seqlens}
    return packed_row_inputs(model, row)


@pytest.mark.parametrize("family", [*FAMILIES, "swa-kernel"])
def test_packed_row_gives_each_document_its_own_logits(family):
    model = FAMILIES[family.removesuffix("-kernel")]()
    gen = torch.Generator().manual_seed(3)
    docs = [torch.randint(2, VOCAB, (1, n), generator=gen) for n in (5, 2 * WINDOW + 1, 9)]
    with torch.no_grad():
        alone = torch.cat([model(doc).logits for doc in docs], dim=1)
        if family == "swa-kernel":  # the Triton kernel's entry in AttentionInterface (its PyTorch reference on CPU)
            use_sliding_window_kernel(model)
        packed = model(**packed_inputs(model, docs)).logits
    torch.testing.assert_close(packed, alone, atol=2e-5, rtol=1e-4)


def test_bad_packing_and_left_padding_are_refused_with_the_fix():
    # The GLA student's own checks; the stock sliding-window student takes left padding with an attention mask.
    model = tiny_gla()
    ids = torch.randint(2, VOCAB, (1, 8))
    with pytest.raises(ValueError, match="cu_seqlens must rise"):
        model(ids, cu_seqlens=torch.tensor([0, 5, 7]))
    with pytest.raises(ValueError, match="right padding"):
        model(ids, attention_mask=torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]]))


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_taken_only_where_labels_are_not_minus_100(family):
    model = FAMILIES[family]()
    ids = torch.randint(2, VOCAB, (1, 10), generator=torch.Generator().manual_seed(4))
    labels = ids.clone()
    labels[0, :6] = -100
    out = model(ids, labels=labels)
    # Token t predicts token t+1: positions 5..8 predict the labelled tokens 6..9.
    expected = torch.nn.functional.cross_entropy(out.logits[0, 5:9].float(), ids[0, 6:10])
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_gradients(family):
    ids = torch.randint(2, VOCAB, (1, 2 * WINDOW), generator=torch.Generator().manual_seed(5))
    grads = []
    for checkpointing in (False, True):
        model = FAMILIES[family]().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(**packed_inputs(model, [ids[:, :WINDOW], ids[:, WINDOW:]]), labels=ids).loss.backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_through_auto_model(family, tmp_path):
    model = FAMILIES[family]()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids = torch.randint(2, VOCAB, (1, 2 * WINDOW))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generate_uses_the_constant_cache_and_matches_argmax_decoding(family):
    model = FAMILIES[family](eos_token_id=None)
    prompt = torch.randint(2, VOCAB, (1, 4), generator=torch.Generator().manual_seed(6))
    new_tokens = 3 * WINDOW
    out = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, return_dict_in_generate=True)
    assert out.sequences.shape[1] == prompt.shape[1] + new_tokens
    assert out.past_key_values.get_seq_length() == prompt.shape[1] + new_tokens - 1
    if family == "swa":  # transformers' DynamicCache keeps window - 1 keys and values per sliding layer
        config = model.config
        per_token = 2 * config.num_key_value_heads * (config.hidden_size // config.num_attention_heads) * 4
        assert cache_nbytes(out.past_key_values) == config.num_hidden_layers * (WINDOW - 1) * per_token
    else:
        assert cache_nbytes(out.past_key_values) == cache_nbytes(model.new_cache(1))
    with torch.no_grad():  # every generated token is the argmax of a full, uncached forward over what precedes it
        logits = model(out.sequences, use_cache=False).logits
    torch.testing.assert_close(logits[0, prompt.shape[1] - 1 : -1].argmax(-1), out.sequences[0, prompt.shape[1] :])
