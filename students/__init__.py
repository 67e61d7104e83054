"""Recurrent students: sliding-window and gated-linear-attention decoders, conversion, EMR reading, training.

Sliding-window students are stock transformers architectures (Mistral / Qwen2 with every layer sliding-window), so
they load anywhere with `AutoModelForCausalLM.from_pretrained(folder)`. Importing `students` registers the GLA
family with AutoConfig / AutoModelForCausalLM and our Triton sliding-window kernel with transformers'
AttentionInterface (as "smooth_reading_swa").
"""

from transformers import AutoConfig, AutoModelForCausalLM

from students.gla import GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM, RecurrentStateCache
from students.swa import (
    SWA_ATTENTION,
    sliding_window_config,
    upgrade_legacy_export,
    use_sliding_window_kernel,
    window_of,
)

AutoConfig.register(GatedLinearAttentionConfig.model_type, GatedLinearAttentionConfig, exist_ok=True)
AutoModelForCausalLM.register(GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM, exist_ok=True)

__all__ = [
    "SWA_ATTENTION",
    "GatedLinearAttentionConfig",
    "GatedLinearAttentionForCausalLM",
    "RecurrentStateCache",
    "sliding_window_config",
    "upgrade_legacy_export",
    "use_sliding_window_kernel",
    "window_of",
]
