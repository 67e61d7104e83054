"""Upgrade a sliding-window student exported before students were stock architectures (model_type smooth_reading_swa).

Rewrites its config.json in place as the stock twin (MistralForCausalLM, or Qwen2ForCausalLM when it has q/k/v
biases) with every layer sliding-window; the weights already have the stock names and are not touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="the exported student (RUN_DIR/export)")


def run(args: argparse.Namespace) -> int:
    from students.swa import upgrade_legacy_export

    config = upgrade_legacy_export(args.folder)
    print(f"{args.folder}: now {config.architectures[0]} with sliding_window {config.sliding_window}")
    return 0
