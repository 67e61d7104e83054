"""A sliding-window-attention decoder in the Llama / Qwen2 layout, with a constant-size ring-buffer cache.

Every layer is the Llama block (RMSNorm, RoPE, GQA attention, SwiGLU MLP) with one change: token i attends to the
`window` tokens i - window < j <= i. Module names equal Llama's, so a Llama or Qwen2 checkpoint loads into it
unchanged (students.convert). The cache keeps the last `window` keys and values per layer; RoPE is applied before
caching, so cached keys keep their absolute positions and the model reads any length in the same memory.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_rope_utils import RopeParameters
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

import kernels
from students.common import causal_lm_output, check_inputs, packed_position_ids, segment_bounds, wants_cache


class SlidingWindowConfig(PretrainedConfig):
    model_type = "smooth_reading_swa"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 2048
    intermediate_size: int = 11008
    num_hidden_layers: int = 36
    num_attention_heads: int = 16
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    window: int = 4096  # tokens each query sees, itself included; also the cache length
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = False  # bias on q/k/v (Qwen2 has it)
    attention_out_bias: bool = False  # bias on o_proj (Llama's attention_bias=True sets both)
    mlp_bias: bool = False
    use_cache: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.window < 1:
            raise ValueError(f"window must be at least 1 token, got {self.window}")
        super().__post_init__(**kwargs)


class SlidingWindowCache:
    """Per layer, a ring buffer of the last `window` keys and values: token at position p lives in slot p % window.

    Allocated in full up front, so its size in bytes never changes however much is read. `seen` counts every
    token fed so far; it is the position of the next token.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, config: SlidingWindowConfig, batch_size: int, dtype: torch.dtype, device: torch.device | str):
        shape = (batch_size, config.window, config.num_key_value_heads, config.head_dim)
        self.window = config.window
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.seen = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def recent(self, layer_idx: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last `count` cached keys and values in position order (count <= min(seen, window))."""
        slots = torch.arange(self.seen - count, self.seen, device=self.keys[layer_idx].device) % self.window
        return self.keys[layer_idx][:, slots], self.values[layer_idx][:, slots]

    def write(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the keys/values of the tokens at positions seen .. seen+T-1 (only the last `window` survive)."""
        keep = min(k.shape[1], self.window)
        start = self.seen + k.shape[1] - keep
        slots = torch.arange(start, start + keep, device=k.device) % self.window
        self.keys[layer_idx][:, slots] = k[:, -keep:].to(self.keys[layer_idx].dtype)
        self.values[layer_idx][:, slots] = v[:, -keep:].to(self.values[layer_idx].dtype)

    def advance(self, num_tokens: int) -> None:
        self.seen += num_tokens


class SlidingWindowAttention(nn.Module):
    def __init__(self, config: SlidingWindowConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.window = config.window
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=config.attention_out_bias)

    def forward(self, x, position_embeddings, cache: SlidingWindowCache | None = None, cu_seqlens=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)

        if cache is None:
            o = torch.cat(
                [
                    kernels.sliding_window_attention(q[:, s:e], k[:, s:e], v[:, s:e], self.window, self.scale)
                    for s, e in segment_bounds(cu_seqlens, T)
                ],
                dim=1,
            )
        elif T == 1:
            cache.write(self.layer_idx, k, v)
            o = kernels.sliding_window_decode(
                q, cache.keys[self.layer_idx], cache.values[self.layer_idx], cache.seen + 1, self.window, self.scale
            )
        else:
            # A chunk after earlier rounds: prepend the last window-1 cached keys (the most any new query can
            # reach) and run the same windowed kernel; the prepended rows' outputs are dropped.
            past = min(cache.seen, self.window - 1)
            past_k, past_v = cache.recent(self.layer_idx, past)
            q_full = torch.cat([q.new_zeros(B, past, self.num_heads, self.head_dim), q], dim=1)
            k_full = torch.cat([past_k.to(k.dtype), k], dim=1)
            v_full = torch.cat([past_v.to(v.dtype), v], dim=1)
            o = kernels.sliding_window_attention(q_full, k_full, v_full, self.window, self.scale)[:, past:]
            cache.write(self.layer_idx, k, v)
        return self.o_proj(o.reshape(B, T, self.num_heads * self.head_dim))


class SlidingWindowDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: SlidingWindowConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = SlidingWindowAttention(config, layer_idx)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, hidden_states, position_embeddings=None, past_key_values=None, cu_seqlens=None):
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, past_key_values, cu_seqlens
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class SlidingWindowPreTrainedModel(PreTrainedModel):
    config_class = SlidingWindowConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SlidingWindowDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]


class SlidingWindowModel(SlidingWindowPreTrainedModel):
    def __init__(self, config: SlidingWindowConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(SlidingWindowDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
        use_cache=None, cu_seqlens=None,
    ) -> tuple[torch.Tensor, SlidingWindowCache | None]:
        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = hidden_states.shape
        if wants_cache(use_cache, self.config, self.training, cu_seqlens) and past_key_values is None:
            past_key_values = SlidingWindowCache(self.config, B, hidden_states.dtype, hidden_states.device)
        cache = past_key_values
        check_inputs(B, attention_mask, cu_seqlens, cache is not None)

        if position_ids is None:
            if cu_seqlens is not None:
                position_ids = packed_position_ids(cu_seqlens, T, hidden_states.device)
            else:
                start = cache.seen if cache is not None else 0
                position_ids = torch.arange(start, start + T, device=hidden_states.device).unsqueeze(0)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)

        for layer in self.layers:
            hidden_states = layer(
                hidden_states, position_embeddings=position_embeddings, past_key_values=cache, cu_seqlens=cu_seqlens
            )
        if cache is not None:
            cache.advance(T)
        return self.norm(hidden_states), cache


class SlidingWindowForCausalLM(SlidingWindowPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: SlidingWindowConfig):
        super().__init__(config)
        self.model = SlidingWindowModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not hand us a growing DynamicCache: forward() builds the ring buffer itself.
        return False

    def new_cache(self, batch_size: int = 1) -> SlidingWindowCache:
        return SlidingWindowCache(self.config, batch_size, self.dtype, self.device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: SlidingWindowCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        cu_seqlens: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """labels: token ids with -100 where no loss is taken (shifted inside, as in every HF causal LM).
        cu_seqlens: document boundaries of a packed batch-1 row; attention never crosses them."""
        if cu_seqlens is not None:
            cu_seqlens = cu_seqlens.flatten()
        hidden_states, cache = self.model(
            input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache, cu_seqlens
        )
        return causal_lm_output(self, hidden_states, cache, labels, logits_to_keep, kwargs.get("num_items_in_batch"))
