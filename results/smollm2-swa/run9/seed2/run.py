"""Run 9's recipe at seed 2 and the rest of the comparison, on one machine (session 19, 2026-12-05):
generate + train on ../config.yaml with the generate, student and data seeds 2 (the evaluation's seed stays 1, so
the documents are run 9's); seed 2's EMR NIAH 2k-8k and 16k; run 9's EMR NIAH 32k (resuming the folder
../run.py left, where 2k-16k are read) and EMR HotpotQA 2k-16k; run 8's EMR HotpotQA 2k and 4k (the previous recipe
on this machine, `../../run8-demo/`). No parent rows: the parent's are committed and read the same documents.

    python results/smollm2-swa/run9/seed2/run.py SEED2_OUT RUN9_OUT RUN8_OUT

The session made these calls in another order, across two processes (it stopped the first to read run 9's 32k and
run 8's HotpotQA sooner). Each (model, task, length) group is read as one batch of the same documents and a folder
resumes by group; that another order gives the same predictions is expected, not checked.
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
    s2, r9, r8 = (Path(arg) for arg in sys.argv[1:4])
    config = DemoConfig.load("results/smollm2-swa/run9/config.yaml")
    config.generate.seed = config.train.student.seed = config.train.data.seed = 2
    print(timed("generate", generate, config.generate, s2 / "corpus"), flush=True)
    spec = prepare_run(corpus_dir=s2 / "corpus", run_dir=s2 / "run", config=config.train)
    code = timed("train", launch, spec, "local")
    if code != 0:
        sys.exit(code)
    emr = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
    niah = emr.model_copy(update={"tasks": ["niah"]})
    hotpotqa = emr.model_copy(update={"tasks": ["hotpotqa"]})
    seed2, run9, run8 = s2 / "run" / "export", r9 / "run" / "export", r8 / "run" / "export"
    timed("seed 2 NIAH 2k-8k", evaluate, seed2, s2 / "eval-emr-niah",
          niah.model_copy(update={"lengths": [2048, 4096, 8192]}))
    timed("seed 2 NIAH 16k", evaluate, seed2, s2 / "eval-emr-niah-16k", niah.model_copy(update={"lengths": [16384]}))
    timed("run 9 NIAH 32k", evaluate, run9, r9 / "eval-emr-niah", niah)
    timed("run 9 HotpotQA", evaluate, run9, r9 / "eval-emr-hotpotqa", hotpotqa)
    timed("run 8 HotpotQA 2k 4k", evaluate, run8, r8 / "eval-emr-hotpotqa",
          hotpotqa.model_copy(update={"hotpotqa_lengths": [2048, 4096]}))
