"""Start a recurrent student from a self-attention checkpoint (Llama / Mistral / Qwen2 layout).

The paper's SWA-3B-4k is Qwen-2.5-3B with its attention limited to a 4k window and every weight kept: here a stock
`MistralForCausalLM` (Llama / Mistral sources) or `Qwen2ForCausalLM` (Qwen2 sources, q/k/v biases) with every layer
sliding-window. The GLA student reuses whatever attention weights fit its shapes. Both can add the stream's special tokens to the
checkpoint's tokenizer and grow the embeddings to match.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from students.gla import GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM
from students.swa import STUDENT_MAX_POSITIONS, sliding_window_config
from students.tokenizer import add_stream_tokens, resize_for_stream_tokens

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


def convert_to_sliding_window(
    model_or_path: PreTrainedModel | str | Path, window: int, tokenizer: PreTrainedTokenizerBase | None = None
) -> PreTrainedModel:
    """The same network with attention limited to the last `window` tokens, as a stock architecture (a Mistral, or
    a Qwen2 for a Qwen2 source); every weight is kept.

    On inputs no longer than `window` it computes exactly what the source model computes. When `tokenizer` is
    given, the stream markers are added to it (in place) and the student's embeddings are resized to match.
    """
    source = _load_source(model_or_path)
    src = source.config
    if src.model_type != "qwen2" and (getattr(src, "attention_bias", False) or getattr(src, "mlp_bias", False)):
        raise ValueError(
            f"cannot convert a {src.model_type!r} checkpoint with attention_bias / mlp_bias: the stock sliding-window "
            "architectures (Mistral, Qwen2) have no o_proj or MLP biases"
        )
    shared = _shared_config(src)
    shared.pop("mlp_bias")
    shared["max_position_embeddings"] = max(src.max_position_embeddings, STUDENT_MAX_POSITIONS)
    config = sliding_window_config(
        window,
        qkv_bias=_has_qkv_bias(src),
        num_key_value_heads=src.num_key_value_heads,
        head_dim=getattr(src, "head_dim", None) or src.hidden_size // src.num_attention_heads,
        rope_parameters=src.rope_parameters,
        **shared,
    )
    student = AutoModelForCausalLM.from_config(config).to(source.dtype)
    student.load_state_dict(source.state_dict(), strict=True)
    return _with_stream_tokens(student, tokenizer)


def convert_to_gla(
    model_or_path: PreTrainedModel | str | Path, tokenizer: PreTrainedTokenizerBase | None = None
) -> GatedLinearAttentionForCausalLM:
    """A gated-linear-attention student initialised from a self-attention checkpoint.

    Copied: embeddings, lm_head, final norm, every layer's two RMSNorms and SwiGLU MLP, q_proj and o_proj (GLA uses
    the source's head count and head size for queries/keys/values), k_proj and v_proj (each key/value head repeated
    for the query heads that shared it under GQA), and the q/k/v biases of Qwen2.
    Freshly initialised (no attention counterpart): the low-rank forget gate gk_proj, the output gate g_proj and the
    per-head output norm g_norm. Dropped: RoPE (GLA has no position encoding) and a Llama o_proj bias, if any.
    When `tokenizer` is given, the stream markers are added to it (in place) and the embeddings are resized.
    """
    source = _load_source(model_or_path)
    src = source.config
    heads, kv_heads = src.num_attention_heads, src.num_key_value_heads
    head_dim = getattr(src, "head_dim", None) or src.hidden_size // heads
    config = GatedLinearAttentionConfig(
        head_dim=head_dim, value_head_dim=head_dim, attention_bias=_has_qkv_bias(src), **_shared_config(src)
    )
    student = GatedLinearAttentionForCausalLM(config).to(source.dtype)

    weights = {}
    for name, tensor in source.state_dict().items():
        if name.endswith("self_attn.o_proj.bias"):
            continue
        if name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias")):
            tensor = tensor.view(kv_heads, head_dim, *tensor.shape[1:]).repeat_interleave(heads // kv_heads, dim=0)
            tensor = tensor.reshape(heads * head_dim, *tensor.shape[2:])
        weights[name] = tensor
    missing, unexpected = student.load_state_dict(weights, strict=False)
    fresh = ("gk_proj", "g_proj", "g_norm")
    if unexpected or any(not any(part in name for part in fresh) for name in missing):
        raise ValueError(f"checkpoint does not fit the GLA layout: missing {missing}, unexpected {unexpected}")
    return _with_stream_tokens(student, tokenizer)


def _load_source(model_or_path: PreTrainedModel | str | Path) -> PreTrainedModel:
    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = AutoModelForCausalLM.from_pretrained(model_or_path)
    if model.config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"cannot convert a {model.config.model_type!r} checkpoint: supported layouts are {SUPPORTED_MODEL_TYPES} "
            "(RMSNorm + RoPE + GQA attention + SwiGLU MLP, no q/k norms)"
        )
    return model


def _has_qkv_bias(src) -> bool:
    return src.model_type == "qwen2" or bool(getattr(src, "attention_bias", False))


def _shared_config(src) -> dict:
    return dict(
        vocab_size=src.vocab_size,
        hidden_size=src.hidden_size,
        intermediate_size=src.intermediate_size,
        num_hidden_layers=src.num_hidden_layers,
        num_attention_heads=src.num_attention_heads,
        hidden_act=src.hidden_act,
        max_position_embeddings=src.max_position_embeddings,
        initializer_range=src.initializer_range,
        rms_norm_eps=src.rms_norm_eps,
        mlp_bias=bool(getattr(src, "mlp_bias", False)),
        tie_word_embeddings=src.tie_word_embeddings,
        pad_token_id=src.pad_token_id,
        bos_token_id=src.bos_token_id,
        eos_token_id=src.eos_token_id,
    )


def _with_stream_tokens(student, tokenizer: PreTrainedTokenizerBase | None):
    if tokenizer is not None:
        add_stream_tokens(tokenizer)
        resize_for_stream_tokens(student, tokenizer)
    return student.eval()


__all__ = ["convert_to_gla", "convert_to_sliding_window", "SUPPORTED_MODEL_TYPES"]
