"""A gated-linear-attention decoder (Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training") in the Llama layout, with a fixed-size recurrent state per layer.

The token mixer keeps a matrix state S [Dk, Dv] per head: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = q_t S_t,
with a data-dependent forget gate g_t = logsigmoid(low-rank(x_t)) / normaliser (<= 0). Its output is normalised per
head and gated by swish(W_g x_t) before o_proj, as in the paper and flash-linear-attention's GatedLinearAttention.
There is no positional encoding: the decay orders the tokens. Norms, MLP and embeddings keep Llama's names, so
students.convert can start from a Llama / Qwen2 checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

import kernels
from students.common import causal_lm_output, check_inputs, segment_bounds, wants_cache


class GatedLinearAttentionConfig(PretrainedConfig):
    model_type = "smooth_reading_gla"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 2048
    intermediate_size: int = 5632
    num_hidden_layers: int = 24
    num_attention_heads: int = 4
    head_dim: int | None = None  # query/key head size Dk; the paper's expand_k = 0.5 is head_dim = hidden / 2 / heads
    value_head_dim: int | None = None  # Dv; defaults to hidden_size / heads (expand_v = 1)
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: int = 16
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768  # no position encoding; kept for tools that read it
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False  # bias on q/k/v (set when converted from Qwen2)
    mlp_bias: bool = False
    use_cache: bool = True
    tie_word_embeddings: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // 2 // self.num_attention_heads
        if self.value_head_dim is None:
            self.value_head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)


class RecurrentStateCache:
    """One fp32 state [B, H, Dk, Dv] per layer, whatever the length read: the model's whole memory of the past."""

    is_compileable = False
    is_croppable = False

    def __init__(self, config: GatedLinearAttentionConfig, batch_size: int, device: torch.device | str):
        shape = (batch_size, config.num_attention_heads, config.head_dim, config.value_head_dim)
        self.states = [torch.zeros(shape, dtype=torch.float32, device=device) for _ in range(config.num_hidden_layers)]
        self.seen = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    @property
    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states)

    def advance(self, num_tokens: int) -> None:
        self.seen += num_tokens


class GatedLinearAttention(nn.Module):
    def __init__(self, config: GatedLinearAttentionConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.value_head_dim = config.value_head_dim
        self.gate_logit_normalizer = config.gate_logit_normalizer
        key_dim, value_dim = self.num_heads * self.head_dim, self.num_heads * self.value_head_dim
        self.q_proj = nn.Linear(config.hidden_size, key_dim, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, key_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, value_dim, bias=config.attention_bias)
        # Low rank keeps the forget gate cheap; its bias sets the initial decay.
        self.gk_proj = nn.Sequential(
            nn.Linear(config.hidden_size, config.gate_low_rank_dim, bias=False),
            nn.Linear(config.gate_low_rank_dim, key_dim, bias=True),
        )
        self.g_proj = nn.Linear(config.hidden_size, value_dim, bias=False)  # output gate
        self.g_norm = LlamaRMSNorm(self.value_head_dim, eps=config.rms_norm_eps)
        self.o_proj = nn.Linear(value_dim, config.hidden_size, bias=False)

    def forward(self, x, cache: RecurrentStateCache | None = None, cu_seqlens=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_heads, self.value_head_dim)
        g = (F.logsigmoid(self.gk_proj(x).float()) / self.gate_logit_normalizer).view(B, T, self.num_heads, self.head_dim)

        if cache is None:
            o = torch.cat(
                [
                    kernels.chunk_gated_linear_attention(q[:, s:e], k[:, s:e], v[:, s:e], g[:, s:e])[0]
                    for s, e in segment_bounds(cu_seqlens, T)
                ],
                dim=1,
            )
        else:
            # The fused recurrent kernel decodes one token without a backward; the chunked one computes the same.
            decoding = T == 1 and not (torch.is_grad_enabled() and q.requires_grad)
            mixer = kernels.fused_recurrent_gated_linear_attention if decoding else kernels.chunk_gated_linear_attention
            o, state = mixer(q, k, v, g, initial_state=cache.states[self.layer_idx], output_final_state=True)
            cache.states[self.layer_idx] = state.float()

        o = self.g_norm(o) * F.silu(self.g_proj(x).view(B, T, self.num_heads, self.value_head_dim))
        return self.o_proj(o.reshape(B, T, -1).to(x.dtype))


class GatedLinearAttentionDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: GatedLinearAttentionConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = GatedLinearAttention(config, layer_idx)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, hidden_states, past_key_values=None, cu_seqlens=None):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), past_key_values, cu_seqlens)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class GatedLinearAttentionPreTrainedModel(PreTrainedModel):
    config_class = GatedLinearAttentionConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GatedLinearAttentionDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]


class GatedLinearAttentionModel(GatedLinearAttentionPreTrainedModel):
    def __init__(self, config: GatedLinearAttentionConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(GatedLinearAttentionDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, past_key_values=None, inputs_embeds=None, use_cache=None,
        cu_seqlens=None,
    ) -> tuple[torch.Tensor, RecurrentStateCache | None]:
        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = hidden_states.shape
        if wants_cache(use_cache, self.config, self.training, cu_seqlens) and past_key_values is None:
            past_key_values = RecurrentStateCache(self.config, B, hidden_states.device)
        cache = past_key_values
        check_inputs(B, attention_mask, cu_seqlens, cache is not None)

        for layer in self.layers:
            hidden_states = layer(hidden_states, past_key_values=cache, cu_seqlens=cu_seqlens)
        if cache is not None:
            cache.advance(T)
        return self.norm(hidden_states), cache


class GatedLinearAttentionForCausalLM(GatedLinearAttentionPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: GatedLinearAttentionConfig):
        super().__init__(config)
        self.model = GatedLinearAttentionModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not hand us a DynamicCache: forward() builds the recurrent-state cache itself.
        return False

    def new_cache(self, batch_size: int = 1) -> RecurrentStateCache:
        return RecurrentStateCache(self.config, batch_size, self.device)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: RecurrentStateCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        cu_seqlens: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """position_ids is accepted for interface parity and unused (GLA has no position encoding).
        labels: token ids with -100 where no loss is taken. cu_seqlens: document boundaries of a packed batch-1
        row; the recurrent state restarts at each one."""
        if cu_seqlens is not None:
            cu_seqlens = cu_seqlens.flatten()
        hidden_states, cache = self.model(input_ids, attention_mask, past_key_values, inputs_embeds, use_cache, cu_seqlens)
        return causal_lm_output(self, hidden_states, cache, labels, logits_to_keep, kwargs.get("num_items_in_batch"))
