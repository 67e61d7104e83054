"""Run 9's recipe at seed 2, and the rest of run 9's grid, chained on one machine (session 19, 2026-12-05):
generate + train on seed2/config.yaml, then its EMR NIAH 2k-8k, then run 9's EMR HotpotQA 2k-16k, then seed 2's
EMR NIAH 16k, then run 9's EMR NIAH 32k (resuming the folder ../run.py left: every other NIAH length is read).
No parent rows: the parent's are committed and read the same documents.

    python results/smollm2-swa/run9/seed2/run.py SEED2_OUT RUN9_OUT
"""
import sys
import time
from pathlib import Path

from jobs.demo import DemoConfig
from jobs.evaluate import evaluate
from jobs.generate import generate
from jobs.train import launch, prepare_run


def timed(label, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    print(label, "s", round(time.perf_counter() - start, 1), flush=True)
    return result


if __name__ == "__main__":
    s2, r9 = Path(sys.argv[1]), Path(sys.argv[2])
    config = DemoConfig.load("results/smollm2-swa/run9/seed2/config.yaml")
    print(timed("generate", generate, config.generate, s2 / "corpus"), flush=True)
    spec = prepare_run(corpus_dir=s2 / "corpus", run_dir=s2 / "run", config=config.train)
    code = timed("train", launch, spec, "local")
    print("launch code", code, flush=True)
    if code != 0:
        sys.exit(code)
    emr = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
    niah = emr.model_copy(update={"tasks": ["niah"]})
    timed("s2 niah 2k-8k", evaluate, s2 / "run" / "export", s2 / "eval-emr-niah", niah.model_copy(update={"lengths": [2048, 4096, 8192]}))
    timed("r9 hotpotqa", evaluate, r9 / "run" / "export", r9 / "eval-emr-hotpotqa", emr.model_copy(update={"tasks": ["hotpotqa"]}))
    timed("s2 niah 16k", evaluate, s2 / "run" / "export", s2 / "eval-emr-niah-16k", niah.model_copy(update={"lengths": [16384]}))
    timed("r9 niah 32k", evaluate, r9 / "run" / "export", r9 / "eval-emr-niah", niah)
