"""Until kernels/ exports its public functions, install naive PyTorch versions of them (same signatures)."""

from __future__ import annotations

import pytest
import torch

import kernels


def _sliding_window_attention(q, k, v, window, scale=None):
    B, T, Hq, D = q.shape
    scale = D**-0.5 if scale is None else scale
    rep = Hq // k.shape[2]
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q.float(), k.float()) * scale
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    scores = scores.masked_fill(~((j <= i) & (j > i - window)), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v.float()).to(q.dtype)


def _sliding_window_decode(q, k_cache, v_cache, seen, window, scale=None):
    B, W, Hkv, D = k_cache.shape
    scale = D**-0.5 if scale is None else scale
    rep = q.shape[2] // Hkv
    k, v = k_cache.repeat_interleave(rep, dim=2), v_cache.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q.float(), k.float()) * scale
    scores = scores.masked_fill(torch.arange(W) >= seen, float("-inf"))  # slots not written yet
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v.float()).to(q.dtype)


def _gated_linear_attention(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    B, T, H, Dk = q.shape
    scale = Dk**-0.5 if scale is None else scale
    state = q.new_zeros(B, H, Dk, v.shape[-1], dtype=torch.float32) if initial_state is None else initial_state.float()
    out = []
    for t in range(T):
        state = state * g[:, t].float().exp()[..., None] + k[:, t].float()[..., None] * v[:, t].float()[:, :, None]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t].float() * scale, state))
    return torch.stack(out, dim=1).to(q.dtype), (state if output_final_state else None)


@pytest.fixture(autouse=True, scope="session")
def kernel_functions():
    missing = {
        "sliding_window_attention": _sliding_window_attention,
        "sliding_window_decode": _sliding_window_decode,
        "chunk_gated_linear_attention": _gated_linear_attention,
        "fused_recurrent_gated_linear_attention": _gated_linear_attention,
    }
    added = [name for name in missing if not hasattr(kernels, name)]
    for name in added:
        setattr(kernels, name, missing[name])
    yield
    for name in added:
        delattr(kernels, name)
