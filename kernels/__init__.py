"""Triton kernels with plain-PyTorch references (sliding-window attention, gated linear attention)."""
