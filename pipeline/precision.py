"""Which float type runs fast on this machine: the one choice behind every `auto` precision or dtype setting.

bf16 halves memory and traffic, but only hardware that computes it natively is faster for it: a CUDA GPU with bf16,
or a CPU with AVX512-BF16 or AMX. Elsewhere (AVX2-only x86, for one) torch falls back to reference kernels and
vLLM's CPU kernels convert, and bf16 training and reading run several to twenty times slower than fp32.
"""

from __future__ import annotations


def native_bf16() -> bool:
    """True where bf16 arithmetic is native: the CUDA device, else this CPU."""
    import torch  # here, so that configs import without torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_dtype(dtype: str) -> str:
    """A reader's or teacher's dtype setting as the engine takes it: `auto` becomes bfloat16 or float32."""
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype
