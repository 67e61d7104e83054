"""Which implementation runs: compiled Triton on CUDA, the Triton interpreter on CPU when TRITON_INTERPRET=1, and the
plain-PyTorch reference otherwise.

Triton decides between compiling and interpreting when a function is *decorated*: its own library (tl.zeros,
tl.cumsum, ... are jitted functions) when triton is first imported, our kernels when their module is imported.
So TRITON_INTERPRET=1 must be set before triton is first imported in the process. Our kernel modules are imported
lazily, through `triton_module`, which reimports one whose kernels were decorated under the other setting; importing
`kernels` never imports triton, and the CPU path without the interpreter never does either.
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
    if interpret_requested() and not triton_imported_for_the_interpreter():
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after triton had been imported in compiled mode, so Triton's own library "
            "cannot run in the interpreter; set TRITON_INTERPRET=1 before anything imports triton (e.g. in the "
            "environment of the process), or unset it to use the PyTorch reference on CPU"
        )
    module = importlib.import_module(name)
    if module.INTERPRETED != interpret_requested():
        module = importlib.reload(module)
    return module


def triton_imported_for_the_interpreter() -> bool:
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(standard.zeros, InterpretedFunction)


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
