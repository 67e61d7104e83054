"""Which implementation runs: compiled Triton on CUDA, the Triton interpreter on CPU when TRITON_INTERPRET=1, and the
plain-PyTorch reference otherwise.

Triton decides between compiling and interpreting when a kernel is *decorated*, i.e. when its module is imported,
not when it is launched. The kernel modules are therefore imported lazily, through `triton_module`, which reimports
a module whose kernels were decorated under the other setting. That way TRITON_INTERPRET=1 may be set at any time
before a call (tests set it per test with monkeypatch), and importing `kernels` never imports triton.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch


def interpret_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(x: torch.Tensor) -> bool:
    return x.is_cuda or (x.device.type == "cpu" and interpret_requested())


def triton_module(name: str) -> ModuleType:
    """Import a kernel module, decorated for the interpreter iff TRITON_INTERPRET=1 right now."""
    module = importlib.import_module(name)
    if module.INTERPRETED != interpret_requested():
        module = importlib.reload(module)
    return module


def is_interpreted() -> bool:
    """Read by every kernel module at import time to record how its kernels were decorated."""
    import triton

    return bool(triton.knobs.runtime.interpret)


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products on the GPU instead of Triton's default tf32.
    return "ieee" if dtype == torch.float32 else "tf32"


def block_size(n: int, minimum: int = 16) -> int:
    """The power-of-two tile that covers n (tl.dot needs every tile side to be at least 16)."""
    return max(minimum, 1 << (max(n, 1) - 1).bit_length())
