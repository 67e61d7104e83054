"""Kernel tests run the Triton kernels: compiled on CUDA, otherwise through the Triton interpreter on CPU.

Without CUDA, tests/conftest.py imports triton with TRITON_INTERPRET=1 before collection (Triton's own jitted
library is fixed in interpreter mode at its first import) and then removes the variable again; each kernel test sets
it back with monkeypatch. So the rest of the suite keeps the fast PyTorch path on CPU, and kernels.dispatch
reimports our kernel modules under the setting of the moment.
The reference functions (`*_ref`) never touch Triton, so tests call them directly for the expected values.
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# The interpreter of triton 3.7-3.9 multiplies the raw 16-bit patterns of bf16 operands in tl.dot, so bf16 cases
# exist only where the kernels are compiled.
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if CUDA else [])
# Largest error allowed, relative to the largest magnitude of the expected tensor.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.fixture(autouse=True)
def triton_kernels(monkeypatch):
    if CUDA:
        return
    from kernels.dispatch import triton_imported_for_the_interpreter

    if not triton_imported_for_the_interpreter():
        pytest.fail(
            "triton was imported in compiled mode before tests/conftest.py ran (a pytest plugin?), so the kernels "
            "cannot be interpreted on CPU: run with TRITON_INTERPRET=1 in the environment"
        )
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    actual, expected = actual.float().cpu(), expected.float().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    error = (actual - expected).abs().max().item()
    bound = TOLERANCE[dtype] * max(expected.abs().max().item(), 1.0)
    assert error <= bound, f"{what} ({dtype}): max error {error:.3g} > {bound:.3g}"
