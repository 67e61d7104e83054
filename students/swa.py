"""Sliding-window students as stock transformers architectures, and our Triton kernel behind AttentionInterface.

A sliding-window student is a Llama-family network whose every layer attends to the last `window` tokens (token i
sees i - window < j <= i). transformers runs exactly that natively, and vLLM serves it:

- `MistralForCausalLM` with `sliding_window` (no attention biases): students from Llama, Mistral or scratch;
- `Qwen2ForCausalLM` with `use_sliding_window`, `max_window_layers=0` (every layer `sliding_attention`): students
  from Qwen2, whose q/k/v biases Mistral has no room for.

So an export loads with `AutoModelForCausalLM.from_pretrained` in any process, and the constant-memory cache is
transformers' own (`DynamicCache(config=...)` keeps window - 1 keys per layer; `StaticCache` allocates `window`).

The Triton kernel (`kernels.sliding_window_attention`) is registered as the attention implementation
`"smooth_reading_swa"`; `use_sliding_window_kernel(model)` selects it (training does so when CUDA is present; on
CPU the stock `sdpa` stays, and the kernel itself would dispatch to its PyTorch reference there).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AttentionInterface, MistralConfig, PretrainedConfig, Qwen2Config
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

import kernels
from students.common import segment_bounds

SWA_ATTENTION = "smooth_reading_swa"
LEGACY_MODEL_TYPE = "smooth_reading_swa"  # the custom class exports had before stock architectures
# A sliding-window student has no position limit of its own (RoPE is relative and nothing older than the window is
# read); its config says so. vLLM precomputes RoPE for max_position_embeddings positions and reads past them as
# garbage, so a student keeping its parent's 8,192 lost every needle past ~8k tokens of stream.
STUDENT_MAX_POSITIONS = 1 << 17


def sliding_window_config(window: int, qkv_bias: bool = False, **shape) -> PretrainedConfig:
    """The stock config of a student whose every layer sees the last `window` tokens.

    `shape`: vocab_size, hidden_size, layers, heads, head_dim, rope_parameters, ... as Mistral/Qwen2 name them.
    With `qkv_bias` (a Qwen2 source) it is a Qwen2 config, otherwise a Mistral one.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 token, got {window}")
    if qkv_bias:
        config = Qwen2Config(use_sliding_window=True, sliding_window=window, max_window_layers=0, **shape)
    else:
        config = MistralConfig(sliding_window=window, **shape)
    if window_of(config) != window:
        raise ValueError(f"could not build an all-sliding-window config from {shape}")
    return config


def window_of(config: PretrainedConfig) -> int | None:
    """The window of a model whose every layer is sliding-window attention; None for any other model."""
    window = getattr(config, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(t != "sliding_attention" for t in layer_types):
        return None
    return int(window)


def use_sliding_window_kernel(model) -> None:
    """Run the model's attention through the registered Triton sliding-window kernel."""
    model.set_attn_implementation(SWA_ATTENTION)


def sliding_window_kernel_attention(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
    sliding_window: int | None = None, **kwargs,
):
    """AttentionInterface function: query [B, Hq, T, D], key/value [B, Hkv, T, D] -> ([B, T, Hq, D], None).

    Whole rows (training, a first prefill) go to the kernel, one document at a time when the row is packed (the
    documents come from `cu_seq_lens_q` or from position_ids restarting at 0). A query block that continues a cache
    (more keys than queries) is computed by SDPA, with the mask `_swa_mask` made for it (None where SDPA's own
    causal rule is enough, as for one new token).
    """
    if attention_mask is not None or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if dropout:
        raise ValueError(f"{SWA_ATTENTION} has no attention dropout; set attention_dropout=0 in the config")
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))
    length = q.shape[1]
    window = sliding_window or length
    out = torch.cat(
        [
            kernels.sliding_window_attention(q[:, s:e], k[:, s:e], v[:, s:e], window, scaling)
            for s, e in segment_bounds(_packed_cu_seqlens(kwargs, length, q.shape[0]), length)
        ],
        dim=1,
    )
    return out, None


def _packed_cu_seqlens(kwargs: dict, length: int, batch_size: int) -> torch.Tensor | None:
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is not None:
        return cu_seqlens
    position_ids = kwargs.get("position_ids")
    if batch_size != 1 or position_ids is None or position_ids.shape[-1] != length:
        return None
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten()
    if len(starts) <= 1:
        return None
    return torch.cat([starts, starts.new_tensor([length])])


def _swa_mask(*args, **kwargs):
    # Whole rows need no mask (the kernel is causal and windowed, and finds the documents itself); a block that
    # continues a cache or carries padding gets SDPA's mask and goes to SDPA.
    whole_row = kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("kv_offset")
    if whole_row and kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(SWA_ATTENTION, sliding_window_kernel_attention)
AttentionMaskInterface.register(SWA_ATTENTION, _swa_mask)


def upgrade_legacy_export(folder: str | Path) -> PretrainedConfig:
    """Rewrite the config.json of an export made with the custom `smooth_reading_swa` classes as its stock twin.

    The weights need no change: the custom classes used Llama's module names. Returns the new config.
    """
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json. Fix: point at an exported student folder")
    old = json.loads(path.read_text())
    if old.get("model_type") != LEGACY_MODEL_TYPE:
        raise ValueError(f"{path} has model_type {old.get('model_type')!r}, not {LEGACY_MODEL_TYPE!r}: nothing to upgrade")
    if old.get("attention_out_bias") or old.get("mlp_bias"):
        raise ValueError(f"{path}: o_proj or MLP biases have no stock sliding-window twin (Mistral / Qwen2); "
                         "retrain without them")
    shape = {name: old[name] for name in _STOCK_FIELDS if name in old}
    config = sliding_window_config(old["window"], qkv_bias=bool(old.get("attention_bias")), **shape)
    config.architectures = [type(config).__name__.replace("Config", "ForCausalLM")]
    config.dtype = old.get("dtype") or old.get("torch_dtype")
    config.save_pretrained(folder)
    return config


_STOCK_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps", "rope_parameters",
    "use_cache", "tie_word_embeddings", "pad_token_id", "bos_token_id", "eos_token_id",
)
