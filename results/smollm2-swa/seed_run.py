"""A results recipe at another seed, then the student's EMR reading in groups, one at a time.

    python results/smollm2-swa/seed_run.py --config results/smollm2-swa/run9/config.yaml --precision fp32 3 OUT
    python results/smollm2-swa/seed_run.py --config results/smollm2-swa/run10/config.yaml --evaluate-only 1 OUT
    python results/smollm2-swa/seed_run.py --config results/smollm2-swa/run10/config.yaml --evaluate-only 1 OUT \
        --hotpotqa-questions 100 --hotpotqa-lengths 2048 4096

generate + train on CONFIG at SEED (`DemoConfig.with_seed`; at the config's own seed, the config as it is: the
evaluation's seed stays the config's, so the documents are the demo's), with `--precision` overriding the config's
training precision (run 9's seeds trained in fp32, where `auto` picks bf16 on AMX) and `--dtype` the readers'; then
EMR groups with the config's evaluation settings, alone on the machine: HotpotQA 2k, 4k, 8k, 16k, then NIAH 2k-8k,
then NIAH 16k-32k. Each group is its own folder under OUT and resumes by itself; `--evaluate-only` reads the groups
of an OUT whose `run/export` exists (a demo stopped after its export, or a run whose reading was cut off).

`--hotpotqa-questions N` reads, instead, N long-HotpotQA questions a length (the config's 20 are the first 20 of
them) with the parent's one-round row in the same group, so each group pairs student and parent by itself:
`hotpotqa-LENGTH-qN`. 20 questions cannot show a 5-point difference from the parent; 100 come nearer.
`--without-parent` leaves the parent's row out: it is the same model reading the same documents at every seed (the
evaluation's seed is the config's), so another seed's group at that length pairs with this one; it saves the
parent's reading (a third of a 16k group's time).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import get_args

from jobs.demo import DemoConfig
from jobs.eval_tasks import ReaderDtype
from jobs.evaluate import evaluate
from jobs.generate import generate
from jobs.prepare_data import prepare_data
from jobs.train import launch, prepare_run
from students.train_config import Precision

EMR_GROUPS = {f"hotpotqa-{n}": {"tasks": ["hotpotqa"], "hotpotqa_lengths": [n]} for n in (2048, 4096, 8192, 16384)}
EMR_GROUPS["niah-2k-8k"] = {"tasks": ["niah"], "lengths": [2048, 4096, 8192]}
EMR_GROUPS["niah-16k-32k"] = {"tasks": ["niah"], "lengths": [16384, 32768]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="a demo config YAML")
    parser.add_argument("--precision", choices=get_args(Precision), help="training precision (default: CONFIG's)")
    parser.add_argument("--dtype", choices=get_args(ReaderDtype), help="readers' weights (default: CONFIG's)")
    parser.add_argument("--evaluate-only", action="store_true", help="read the EMR groups of OUT/run/export")
    parser.add_argument("--hotpotqa-questions", type=int, metavar="N",
                        help="read N long-HotpotQA questions a length, with the parent's row, instead of the groups")
    parser.add_argument("--hotpotqa-lengths", type=int, nargs="+",
                        help="lengths of --hotpotqa-questions (default: CONFIG's HotpotQA lengths)")
    parser.add_argument("--without-parent", action="store_true",
                        help="--hotpotqa-questions without the parent's row (pair with another seed's group)")
    parser.add_argument("seed", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    config = DemoConfig.load(args.config)
    if args.seed != config.generate.seed:
        config = config.with_seed(args.seed)
    if args.precision:
        config.train.engine.precision = args.precision
    if args.dtype:
        config.evaluate.dtype = args.dtype
    out = args.out
    if not args.evaluate_only:
        if config.generate.needs_prepared_data:
            prepare_data()  # as the demo does on a fresh machine: once, a no-op when the cache holds it
        start = time.perf_counter()
        print(generate(config.generate, out / "corpus"), flush=True)
        print("generate s", round(time.perf_counter() - start, 1), flush=True)
        start = time.perf_counter()
        code = launch(prepare_run(corpus_dir=out / "corpus", run_dir=out / "run", config=config.train), "local")
        print("train s", round(time.perf_counter() - start, 1), flush=True)
        if code != 0:
            return code
    if args.hotpotqa_questions:
        without = {"teacher": ""} if args.without_parent else {}
        reading = config.evaluate.model_copy(update={"modes": ["emr"], **without})
        n = args.hotpotqa_questions
        groups = {f"hotpotqa-{length}-q{n}": {"tasks": ["hotpotqa"], "hotpotqa_lengths": [length], "n_per_length": n}
                  for length in args.hotpotqa_lengths or config.evaluate.hotpotqa_lengths or config.evaluate.lengths}
    else:
        reading = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
        groups = EMR_GROUPS
    for name, update in groups.items():
        start = time.perf_counter()
        evaluate(out / "run" / "export", out / name, reading.model_copy(update=update))
        print(name, "s", round(time.perf_counter() - start, 1), time.strftime("%H:%M:%S"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
