"""Plain-PyTorch gated linear attention (Yang et al. 2024): the step-by-step recurrence and a chunked form.

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,    o_t = (scale * q_t) S_t

q, k, g [B, T, H, Dk]; v [B, T, H, Dv]; state S [B, H, Dk, Dv]; g <= 0 are log-space forget gates per key dim.
Both forms compute in fp32 and return o in v's dtype and the final state in fp32.
"""

from __future__ import annotations

import torch


def check_gla_inputs(q, k, v, g, initial_state) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != g.shape:
        raise ValueError(
            f"gated_linear_attention: q, k, g must share one shape [batch, time, heads, key_dim], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(g.shape)}"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"gated_linear_attention: v must be [batch, time, heads, value_dim] matching q {tuple(q.shape)} in the "
            f"first three, got {tuple(v.shape)}"
        )
    B, _, H, K = q.shape
    if initial_state is not None and tuple(initial_state.shape) != (B, H, K, v.shape[3]):
        raise ValueError(
            f"gated_linear_attention: initial_state must be [batch, heads, key_dim, value_dim] = "
            f"{(B, H, K, v.shape[3])}, got {tuple(initial_state.shape)}; pass the final_state of the previous call"
        )


def gla_recurrent_ref(q, k, v, g, scale=None, initial_state=None, output_final_state=False):
    """The recurrence one token at a time: the ground truth."""
    check_gla_inputs(q, k, v, g, initial_state)
    B, T, H, K = q.shape
    scale = K**-0.5 if scale is None else scale
    q, k, v, g = (x.float().transpose(1, 2) for x in (q, k, v, g))
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.float()
    outputs = []
    for t in range(T):
        S = g[:, :, t].exp()[..., None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outputs.append(torch.einsum("bhk,bhkv->bhv", q[:, :, t] * scale, S))
    o = torch.stack(outputs, dim=2).transpose(1, 2)
    return o, (S if output_final_state else None)


def gla_chunk_ref(q, k, v, g, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """The same sums, a chunk of tokens at a time (the CPU path).

    Inside a chunk with cumulative gates b_t = g_1 + ... + g_t (b decreasing), the decay from key s to query t is
    exp(b_t - b_s). It is split around the chunk's first position, q_t exp(b_t) and k_s exp(-b_s), only while that
    cannot overflow fp32 (|b| small); otherwise the chunk is split in halves, down to single steps.
    """
    check_gla_inputs(q, k, v, g, initial_state)
    B, T, H, K = q.shape
    scale = K**-0.5 if scale is None else scale
    q, k, v, g = (x.float().transpose(1, 2) for x in (q, k, v, g))
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.float()
    outputs = []
    start = 0
    while start < T:
        size = min(chunk_size, T - start)
        # exp(-b) up to e^60 keeps every product finite in fp32; halve the chunk until the gates allow it.
        while size > 1 and -g[:, :, start : start + size].sum(2).min() > 60:
            size //= 2
        end = start + size
        qc, kc, vc = q[:, :, start:end] * scale, k[:, :, start:end], v[:, :, start:end]
        b = g[:, :, start:end].cumsum(2)
        q_decayed = qc * b.exp()
        k_grown = kc * (-b).exp()
        causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
        attn = (q_decayed @ k_grown.transpose(-1, -2)).masked_fill(~causal, 0.0)
        outputs.append(q_decayed @ S + attn @ vc)
        b_last = b[:, :, -1:]
        S = b_last.exp().transpose(-1, -2) * S + (kc * (b_last - b).exp()).transpose(-1, -2) @ vc
        start = end
    o = torch.cat(outputs, dim=2).transpose(1, 2)
    return o, (S if output_final_state else None)
