"""The GPU check (run by scripts/gpu_check.sh): compiled Triton kernels against their references, the sliding-window
kernel against SDPA / flash attention at 4k-64k, and one training step of a SmolLM2-shaped student with the kernels.

Needs only torch, triton and transformers (no vLLM, Ray or DeepSpeed) and this repository on PYTHONPATH. Prints one
markdown table per part and ends with "ALL PASSED" or the number of failures (exit status 1).
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from kernels import (
    chunk_gated_linear_attention,
    fused_recurrent_gated_linear_attention,
    sliding_window_attention,
    sliding_window_decode,
)
from kernels.gated_linear_attention import gla_recurrent_ref
from kernels.sliding_window import sliding_window_attention_ref

DEVICE = torch.device("cuda")
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}  # the kernel tests' bounds (kernels/README.md)
failures: list[str] = []


def check(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> str:
    got, want = got.float(), want.float()
    error = (got - want).abs().max().item() / max(want.abs().max().item(), 1.0)
    ok = torch.isfinite(got).all().item() and error <= TOLERANCE[dtype]
    if not ok:
        failures.append(f"{name}: relative error {error:.3g}")
    return f"{error:.2e}{'' if ok else ' FAIL'}"


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE).to(dtype)


def sliding_window_cases() -> None:
    print("\n## Sliding-window kernel vs fp32 reference (forward, backward, decode)\n")
    print("| dtype | T | window | Hq/Hkv | D | o | dq | dk | dv | decode |\n|---|---|---|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for T, window, hq, hkv, D in [(1000, 129, 8, 2, 64), (777, 300, 4, 4, 128), (2049, 511, 9, 3, 64)]:
            q, k, v = (randn(2, T, h, D, dtype=dtype, seed=i).requires_grad_() for i, h in enumerate((hq, hkv, hkv)))
            o = sliding_window_attention(q, k, v, window)
            do = randn(*o.shape, dtype=dtype, seed=9)
            o.backward(do)
            ref = [x.detach().float().requires_grad_() for x in (q, k, v)]
            ro = sliding_window_attention_ref(*ref, window)
            ro.backward(do.float())
            cells = [check(f"swa {name} {dtype} T={T}", a, b, dtype)
                     for name, a, b in zip(("o", "dq", "dk", "dv"), (o, q.grad, k.grad, v.grad), (ro, *[x.grad for x in ref]))]
            # Decode the last 5 positions from a ring buffer of `window` slots.
            kc = torch.zeros(2, window, hkv, D, dtype=dtype, device=DEVICE)
            vc = torch.zeros_like(kc)
            worst = 0.0
            for pos in range(T):
                kc[:, pos % window], vc[:, pos % window] = k[:, pos].detach(), v[:, pos].detach()
                if pos >= T - 5:
                    od = sliding_window_decode(q[:, pos:pos + 1].detach(), kc, vc, pos + 1, window)
                    want = ro[:, pos:pos + 1].detach()
                    worst = max(worst, (od.float() - want).abs().max().item() / max(want.abs().max().item(), 1.0))
            decode = f"{worst:.2e}" + ("" if worst <= TOLERANCE[dtype] else " FAIL")
            if worst > TOLERANCE[dtype]:
                failures.append(f"swa decode {dtype} T={T}")
            print(f"| {str(dtype)[6:]} | {T} | {window} | {hq}/{hkv} | {D} | " + " | ".join(cells) + f" | {decode} |")


def gla_cases() -> None:
    print("\n## GLA kernels vs fp32 recurrence (chunk forward/backward, fused recurrent decode)\n")
    print("| dtype | T | chunk | o | state | dq | dk | dv | dg | recurrent o |\n|---|---|---|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for T, chunk in [(1000, 64), (333, 32), (77, 16)]:
            B, H, K, V = 2, 4, 64, 128
            q, k = randn(B, T, H, K, dtype=dtype, seed=1), randn(B, T, H, K, dtype=dtype, seed=2)
            v = randn(B, T, H, V, dtype=dtype, seed=3)
            g = F.logsigmoid(randn(B, T, H, K, seed=4) * 2) / 4
            h0 = randn(B, H, K, V, seed=5)
            leaves = [x.requires_grad_() for x in (q, k, v, g)]
            o, ht = chunk_gated_linear_attention(q, k, v, g, initial_state=h0, output_final_state=True, chunk_size=chunk)
            do = randn(*o.shape, dtype=dtype, seed=6)
            (o.float() * do.float()).sum().backward()
            ref = [x.detach().float().requires_grad_() for x in leaves]
            ro, rht = gla_recurrent_ref(*ref, initial_state=h0, output_final_state=True)
            (ro * do.float()).sum().backward()
            cells = [check(f"gla {name} {dtype} T={T}", a, b, dtype) for name, a, b in zip(
                ("o", "state", "dq", "dk", "dv", "dg"), (o, ht, *[x.grad for x in leaves]), (ro, rht, *[x.grad for x in ref]))]
            with torch.no_grad():
                fo, _ = fused_recurrent_gated_linear_attention(*(x.detach() for x in leaves), initial_state=h0)
            cells.append(check(f"gla recurrent {dtype} T={T}", fo, ro.detach(), dtype))
            print(f"| {str(dtype)[6:]} | {T} | {chunk} | " + " | ".join(cells) + " |")


def timed(fn, repeats: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def versus_sdpa() -> None:
    print("\n## Sliding-window kernel vs SDPA (bf16, window 4096, 16/4 heads, D 128; forward + backward ms)\n")
    print("| T | ours ms | SDPA window-mask ms | flash (causal, no window) ms | max diff vs SDPA | ours peak GiB | SDPA peak GiB |")
    print("|---|---|---|---|---|---|---|")
    window = 4096
    for T in (4096, 16384, 32768, 65536):
        q, k, v = (randn(1, T, h, 128, dtype=torch.bfloat16, seed=i).requires_grad_() for i, h in enumerate((16, 4, 4)))

        def ours():
            sliding_window_attention(q, k, v, window).sum().backward()

        def sdpa(mask):
            qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
            return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, is_causal=mask is None, enable_gqa=True)

        torch.cuda.reset_peak_memory_stats()
        ours_ms = timed(ours)
        ours_peak = torch.cuda.max_memory_allocated() / 2**30
        diff, sdpa_ms, sdpa_peak = "n/a", "OOM", "OOM"
        try:
            i = torch.arange(T, device=DEVICE)
            mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
            torch.cuda.reset_peak_memory_stats()
            sdpa_ms = f"{timed(lambda: sdpa(mask).sum().backward()):.1f}"
            sdpa_peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}"
            with torch.no_grad():
                want = sdpa(mask).transpose(1, 2)
                diff = check(f"swa vs sdpa T={T}", sliding_window_attention(q, k, v, window), want, torch.bfloat16)
            mask = None  # free the T x T mask before the next length
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
        flash_ms = f"{timed(lambda: sdpa(None).sum().backward()):.1f}"
        print(f"| {T} | {ours_ms:.1f} | {sdpa_ms} | {flash_ms} | {diff} | {ours_peak:.2f} | {sdpa_peak} |")


def training_step() -> None:
    """One AdamW step of a student with SmolLM2-135M's shape (random weights: nothing is downloaded here)."""
    from transformers import AutoModelForCausalLM

    from students.swa import sliding_window_config, use_sliding_window_kernel
    from students.train import packed_row_inputs

    print("\n## One training step, SmolLM2-135M-shaped SWA student (window 512), bf16, kernel attention\n")
    config = sliding_window_config(
        512, vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, tie_word_embeddings=True, rope_parameters={"rope_type": "default",
                                                                                       "rope_theta": 100000.0},
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(DEVICE, torch.bfloat16).train()
    lengths = [1500, 3000, 3692]  # three documents packed into one 8192-token row
    ids = torch.randint(0, 49152, (1, sum(lengths)), device=DEVICE)
    positions = torch.cat([torch.arange(n, device=DEVICE) for n in lengths]).unsqueeze(0)
    cu = torch.tensor([0, 1500, 4500, sum(lengths)], dtype=torch.int32, device=DEVICE)
    row = {"input_ids": ids, "position_ids": positions, "cu_seqlens": cu}
    with torch.no_grad():
        sdpa_loss = model(**packed_row_inputs(model, row), labels=ids).loss.item()
    use_sliding_window_kernel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(**packed_row_inputs(model, row), labels=ids).loss
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    ok = abs(loss.item() - sdpa_loss) < 0.02 * abs(sdpa_loss) and torch.isfinite(loss).item()
    if not ok:
        failures.append(f"training step: loss {loss.item():.4f} vs SDPA {sdpa_loss:.4f}")
    print("| tokens | loss (kernel) | loss (SDPA) | step s | tokens/s | peak GiB |\n|---|---|---|---|---|---|")
    print(f"| {ids.shape[1]} | {loss.item():.4f} | {sdpa_loss:.4f} | {seconds:.2f} | {ids.shape[1] / seconds:.0f} | "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} |" + ("" if ok else " FAIL"))


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    print(f"# GPU check: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for part in (sliding_window_cases, gla_cases, versus_sdpa, training_step):
        started = time.perf_counter()
        try:
            part()
        except Exception as error:  # a part that crashes is a failure to report, not a reason to skip the others
            failures.append(f"{part.__name__}: {type(error).__name__}: {error}")
            print(f"\n{part.__name__} crashed: {type(error).__name__}: {error}")
        print(f"\n({part.__name__}: {time.perf_counter() - started:.0f} s)")
    print("\nALL PASSED" if not failures else f"\n{len(failures)} FAILED:\n" + "\n".join(failures))
    sys.exit(1 if failures else 0)
