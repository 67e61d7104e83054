"""Triton kernels with plain-PyTorch references (sliding-window attention, gated linear attention)."""

from kernels.gated_linear_attention import chunk_gated_linear_attention, fused_recurrent_gated_linear_attention
from kernels.sliding_window import sliding_window_attention, sliding_window_decode

__all__ = [
    "chunk_gated_linear_attention",
    "fused_recurrent_gated_linear_attention",
    "sliding_window_attention",
    "sliding_window_decode",
]
