"""Public gated linear attention: Triton on CUDA or under TRITON_INTERPRET=1, the PyTorch forms otherwise."""

from __future__ import annotations

import torch

from kernels.dispatch import triton_module, use_triton
from kernels.gated_linear_attention.naive import check_gla_inputs, gla_chunk_ref, gla_recurrent_ref

CHUNK_SIZES = (16, 32, 64)
MAX_TRITON_KEY_DIM = 256


def chunk_gated_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunk-parallel GLA for training and prefill.

    q, k, g [B, T, H, Dk] (g <= 0, log-space forget gates); v [B, T, H, Dv]; initial_state [B, H, Dk, Dv] or None.
    Returns o [B, T, H, Dv] in v's dtype and, if output_final_state, the fp32 state after the last token (pass it
    as the next call's initial_state to keep reading). Differentiable in q, k, v, g and initial_state.
    """
    check_gla_inputs(q, k, v, g, initial_state)
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_gated_linear_attention: chunk_size must be one of {CHUNK_SIZES}, got {chunk_size}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return gla_chunk_ref(q, k, v, g, scale, initial_state, output_final_state, chunk_size)
    if q.shape[-1] > MAX_TRITON_KEY_DIM:
        raise ValueError(
            f"chunk_gated_linear_attention: key_dim {q.shape[-1]} is above the {MAX_TRITON_KEY_DIM} the Triton "
            f"kernels hold in one tile; use more heads with a smaller key_dim"
        )
    chunk = triton_module("kernels.gated_linear_attention.chunk")
    return chunk.ChunkGatedLinearAttentionFunction.apply(
        q, k, v, g, scale, initial_state, output_final_state, chunk_size
    )


def fused_recurrent_gated_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token GLA for decoding (T = 1 or a few tokens), same inputs and outputs as the chunked form.

    Inference only: for gradients use chunk_gated_linear_attention, which computes the same function.
    """
    check_gla_inputs(q, k, v, g, initial_state)
    tracked = [x for x in (q, k, v, g, initial_state) if x is not None]
    if torch.is_grad_enabled() and any(x.requires_grad for x in tracked):
        raise ValueError(
            "fused_recurrent_gated_linear_attention is a decoding kernel without a backward; call it under "
            "torch.no_grad(), or use chunk_gated_linear_attention (same outputs) when training"
        )
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not use_triton(q):
        return gla_recurrent_ref(q, k, v, g, scale, initial_state, output_final_state)
    if q.shape[-1] > MAX_TRITON_KEY_DIM:
        raise ValueError(
            f"fused_recurrent_gated_linear_attention: key_dim {q.shape[-1]} is above the {MAX_TRITON_KEY_DIM} the "
            f"Triton kernel holds in one tile; use more heads with a smaller key_dim"
        )
    fused = triton_module("kernels.gated_linear_attention.fused_recurrent")
    return fused.gla_fused_recurrent(q, k, v, g, scale, initial_state, output_final_state)
