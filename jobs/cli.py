"""`smooth-reading`: one command line, one subcommand per job.

Each job module exposes `add_arguments(parser)` and `run(args) -> int`, and imports its heavy dependencies
(torch, vllm, deepspeed, ray) inside `run`, so that `smooth-reading --help` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> module; a job is listed here once it exists.
COMMANDS: dict[str, str] = {
    "generate": "jobs.generate",
    "prepare-teacher": "jobs.teacher_models",
    "prepare-data": "jobs.prepare_data",
    "train": "jobs.train",
    "evaluate": "jobs.evaluate",
    "publish": "jobs.publish",
    "demo": "jobs.demo",
    "upgrade-student": "jobs.upgrade",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smooth-reading", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0], description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # Bad input (a config, a path, a document) is the user's to fix: the message names what and how; a
        # traceback would only bury it. Anything else is our bug and keeps its traceback.
        print(f"smooth-reading {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
