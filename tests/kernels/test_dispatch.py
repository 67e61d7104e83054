"""Which implementation runs where, and that importing `kernels` stays cheap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from kernels import chunk_gated_linear_attention, sliding_window_attention
from kernels.dispatch import triton_module
from kernels.gated_linear_attention import gla_recurrent_ref
from kernels.sliding_window import sliding_window_attention_ref


def test_cpu_without_the_interpreter_uses_pytorch_and_never_imports_triton():
    code = (
        "import sys, torch, kernels\n"
        "q = torch.randn(1, 40, 2, 16)\n"
        "kernels.sliding_window_attention(q, q, q, 8)\n"
        "kernels.chunk_gated_linear_attention(q, q, q, -torch.rand(1, 40, 2, 16))\n"
        "assert 'triton' not in sys.modules, 'triton was imported on the CPU path'\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA tensors always take the compiled kernels")
def test_interpreter_setting_may_change_between_calls(monkeypatch):
    q = torch.randn(1, 20, 2, 16, requires_grad=True)
    g = -torch.rand(1, 20, 2, 16)
    # Without the interpreter a CPU call runs the PyTorch reference ...
    monkeypatch.delenv("TRITON_INTERPRET")
    assert sliding_window_attention(q, q, q, 4).grad_fn.name() != "SlidingWindowAttentionFunctionBackward"
    # ... and a kernel module imported meanwhile is decorated for compilation;
    assert not triton_module("kernels.sliding_window.parallel").INTERPRETED
    # turning the interpreter on again reimports it, so the Triton path still runs on CPU.
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_module("kernels.sliding_window.parallel").INTERPRETED
    o = sliding_window_attention(q, q, q, 4)
    assert o.grad_fn.name() == "SlidingWindowAttentionFunctionBackward"
    torch.testing.assert_close(o, sliding_window_attention_ref(q, q, q, 4))
    o = chunk_gated_linear_attention(q, q, q, g)[0]
    assert o.grad_fn.name() == "ChunkGatedLinearAttentionFunctionBackward"
    torch.testing.assert_close(o, gla_recurrent_ref(q, q, q, g)[0], atol=1e-4, rtol=1e-4)
