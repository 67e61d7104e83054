"""Sliding-window attention: flash-style Triton forward/backward, a ring-buffer decode kernel, PyTorch references."""

from kernels.sliding_window.naive import sliding_window_attention_ref, sliding_window_decode_ref
from kernels.sliding_window.ops import sliding_window_attention, sliding_window_decode

__all__ = [
    "sliding_window_attention",
    "sliding_window_attention_ref",
    "sliding_window_decode",
    "sliding_window_decode_ref",
]
