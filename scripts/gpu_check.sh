#!/usr/bin/env bash
# GPU check for a session lent a device (one H200; torch, triton and transformers only: no vLLM, Ray or DeepSpeed).
# Kernels against their fp32 references in fp32 and bf16 (forward, backward, decode; lengths that are not block
# multiples), the sliding-window kernel against SDPA / flash attention at 4k-64k, and one training step of a
# SmolLM2-shaped sliding-window student through the kernels. Under 8 minutes; the table goes to stdout and to
# $OUT/gpu_check.md when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
log="${OUT:-/tmp}/gpu_check.md"
timeout 480 python scripts/gpu_check.py 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
