"""Recurrent students: sliding-window and gated-linear-attention decoders, conversion, EMR reading, training.

Importing `students` registers both families with AutoConfig / AutoModelForCausalLM, so an exported student loads
with `AutoModelForCausalLM.from_pretrained(folder)`.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from students.gla import GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM, RecurrentStateCache
from students.swa import SlidingWindowCache, SlidingWindowConfig, SlidingWindowForCausalLM

AutoConfig.register(SlidingWindowConfig.model_type, SlidingWindowConfig, exist_ok=True)
AutoModelForCausalLM.register(SlidingWindowConfig, SlidingWindowForCausalLM, exist_ok=True)
AutoConfig.register(GatedLinearAttentionConfig.model_type, GatedLinearAttentionConfig, exist_ok=True)
AutoModelForCausalLM.register(GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM, exist_ok=True)

__all__ = [
    "GatedLinearAttentionConfig",
    "GatedLinearAttentionForCausalLM",
    "RecurrentStateCache",
    "SlidingWindowCache",
    "SlidingWindowConfig",
    "SlidingWindowForCausalLM",
]
