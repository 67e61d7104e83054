"""Gated linear attention: chunk-parallel Triton forward/backward, a fused recurrent decode kernel, PyTorch forms."""

from kernels.gated_linear_attention.naive import gla_chunk_ref, gla_recurrent_ref
from kernels.gated_linear_attention.ops import chunk_gated_linear_attention, fused_recurrent_gated_linear_attention

__all__ = [
    "chunk_gated_linear_attention",
    "fused_recurrent_gated_linear_attention",
    "gla_chunk_ref",
    "gla_recurrent_ref",
]
