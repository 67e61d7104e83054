"""Conversion of a self-attention checkpoint (the shared tiny Llama) into the two student families."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from pipeline.stream import END, READ, SPECIAL_TOKENS, STOP
from students import GatedLinearAttentionForCausalLM, window_of
from students.convert import convert_to_gla, convert_to_sliding_window
from students.tokenizer import STREAM_TOKEN_MEANINGS


def token_ids(vocab_size: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))


def test_sliding_window_student_equals_the_llama_below_its_window(tiny_llama_dir):
    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    student = convert_to_sliding_window(tiny_llama_dir, window=24)
    # A stock architecture: Mistral with every layer limited to the window.
    assert type(student) is MistralForCausalLM and window_of(student.config) == 24
    ids = token_ids(llama.config.vocab_size, 24, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, llama(ids).logits, atol=1e-5, rtol=1e-4)
        # Beyond the window the student no longer sees the start, so the last logits differ.
        longer = token_ids(llama.config.vocab_size, 40, seed=1)
        assert not torch.allclose(student(longer).logits[0, -1], llama(longer).logits[0, -1], atol=1e-4)


def test_a_sliding_window_student_declares_no_position_limit_of_its_parent(tiny_llama_dir):
    """vLLM builds RoPE for max_position_embeddings positions only: a student keeping its parent's limit reads
    garbage positions past it (the SmolLM2 student lost every needle past ~8k tokens of stream)."""
    parent = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).config.max_position_embeddings
    student = convert_to_sliding_window(tiny_llama_dir, window=24)
    assert student.config.max_position_embeddings >= max(1 << 17, parent)
    # RoPE is relative and nothing older than the window is read: the same tokens late in a stream give the same
    # logits as early on.
    ids = token_ids(student.config.vocab_size, 24, seed=2)
    with torch.no_grad():
        early = student(ids, position_ids=torch.arange(24)[None]).logits
        late = student(ids, position_ids=torch.arange(24)[None] + 3 * parent).logits
    torch.testing.assert_close(late, early, atol=1e-4, rtol=1e-3)


def test_sliding_window_conversion_keeps_qwen2_biases():
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(
        Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2)
    ).eval()
    with torch.no_grad():  # fresh biases are zeros; make them matter
        for layer in qwen.model.layers:
            layer.self_attn.k_proj.bias.normal_()
    student = convert_to_sliding_window(qwen, window=16)
    assert type(student) is Qwen2ForCausalLM and window_of(student.config) == 16
    assert set(student.config.layer_types) == {"sliding_attention"}
    ids = token_ids(64, 16, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, qwen(ids).logits, atol=1e-5, rtol=1e-4)


def test_a_mistral_source_keeps_its_class_and_takes_the_new_window():
    from transformers import MistralConfig

    torch.manual_seed(0)
    mistral = MistralForCausalLM(
        MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, sliding_window=None)
    ).eval()
    student = convert_to_sliding_window(mistral, window=8)
    assert type(student) is MistralForCausalLM and window_of(student.config) == 8
    ids = token_ids(64, 20, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(student(ids[:, :8]).logits, mistral(ids[:, :8]).logits, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(student(ids).logits[0, -1], mistral(ids).logits[0, -1], atol=1e-4)


def test_gla_student_reuses_the_attention_weights_that_fit(tiny_llama_dir):
    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    student = convert_to_gla(llama)
    assert isinstance(student, GatedLinearAttentionForCausalLM)
    src, dst = llama.model.layers[1], student.model.layers[1]
    torch.testing.assert_close(dst.self_attn.q_proj.weight, src.self_attn.q_proj.weight)
    torch.testing.assert_close(dst.self_attn.o_proj.weight, src.self_attn.o_proj.weight)
    torch.testing.assert_close(dst.mlp.down_proj.weight, src.mlp.down_proj.weight)
    torch.testing.assert_close(dst.post_attention_layernorm.weight, src.post_attention_layernorm.weight)
    torch.testing.assert_close(student.lm_head.weight, llama.lm_head.weight)
    # The tiny Llama has 2 query heads sharing 1 key/value head: both GLA heads start from that head.
    head_dim = llama.config.head_dim
    kv = src.self_attn.k_proj.weight
    torch.testing.assert_close(dst.self_attn.k_proj.weight[:head_dim], kv)
    torch.testing.assert_close(dst.self_attn.k_proj.weight[head_dim:], kv)
    ids = token_ids(llama.config.vocab_size, 12, seed=3)
    with torch.no_grad():
        assert torch.isfinite(student(ids).logits).all()


def plain_tokenizer() -> PreTrainedTokenizerFast:
    words = ["<unk>", "<s>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


@pytest.mark.parametrize("convert", [lambda m, t: convert_to_sliding_window(m, 16, t), convert_to_gla], ids=["swa", "gla"])
def test_conversion_adds_the_stream_tokens_and_grows_the_embeddings(convert):
    tokenizer = plain_tokenizer()
    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    ).eval()
    torch.manual_seed(1)  # the same fresh GLA gates in both conversions
    before = convert(llama, None)
    torch.manual_seed(1)
    student = convert(llama, tokenizer)
    assert len(tokenizer) == 10 + len(SPECIAL_TOKENS)
    assert student.config.vocab_size == len(tokenizer)
    assert student.get_input_embeddings().weight.shape[0] == len(tokenizer)
    marker_ids = tokenizer("<query>the cat<chunk>", add_special_tokens=False)["input_ids"]
    assert len(marker_ids) == 4  # each marker is a single new token
    old_ids = tokenizer("the cat sat on a mat", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # the original vocabulary is untouched
        torch.testing.assert_close(student(old_ids).logits[..., :10], before(old_ids).logits, atol=1e-5, rtol=1e-4)
        assert torch.isfinite(student(torch.tensor([marker_ids])).logits).all()


def test_new_stream_markers_start_from_what_they_mean_so_read_and_stop_differ():
    words = ["<unk>", "<s>", "continue", "reading", "stop", "and", "answer", "Question", "Text", "Summary", ":", "mat"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="mat")
    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
    ).eval()
    old = llama.get_input_embeddings().weight.detach().clone()
    student = convert_to_sliding_window(llama, 16, tokenizer)
    rows = student.get_input_embeddings().weight.detach()

    def meaning(words: str) -> torch.Tensor:
        return old[tokenizer(words, add_special_tokens=False)["input_ids"]].mean(0)

    read, stop, end = (tokenizer.convert_tokens_to_ids(t) for t in (READ, STOP, END))
    torch.testing.assert_close(rows[read], meaning(STREAM_TOKEN_MEANINGS[READ]))
    torch.testing.assert_close(rows[stop], meaning(STREAM_TOKEN_MEANINGS[STOP]))
    torch.testing.assert_close(rows[end], old[tokenizer.convert_tokens_to_ids("mat")])
    assert not torch.allclose(rows[read], rows[stop])
    with torch.no_grad():  # tied: the two actions score differently from the first step
        logits = student(torch.tensor([[1, 2, 3]])).logits[0, -1]
    assert logits[read] != logits[stop]
    torch.testing.assert_close(rows[: len(words)], old)  # the original vocabulary is untouched


def test_unsupported_checkpoints_are_refused_by_name():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(ValueError, match="'gpt2'"):
        convert_to_sliding_window(gpt2, window=8)
    llama_with_biases = LlamaForCausalLM(
        LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    attention_bias=True)
    )
    with pytest.raises(ValueError, match="attention_bias"):
        convert_to_sliding_window(llama_with_biases, window=8)
