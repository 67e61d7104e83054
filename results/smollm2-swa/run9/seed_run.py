"""Run 9's recipe at another seed (session 22, 2026-12-05, main 6c0e11d, a 2-core Xeon with AMX): a new draw of the
corpus, of the new tokens' initial weights and of the data order, to see how far long HotpotQA moves with the seed.

    python results/smollm2-swa/run9/seed_run.py SEED OUT

generate + train on config.yaml here at SEED (`DemoConfig.with_seed`: the evaluation's seed stays 1, so the
documents are run 9's), in fp32 as seeds 1 and 2 were (on AMX `precision: auto` would pick bf16); then EMR groups with
the demo's evaluation settings (`dtype: auto`, so bf16 reading on AMX, where seeds 1 and 2 read in fp32 on an AVX2-only
CPU), one at a time, alone on the machine: HotpotQA 2k, 4k, 8k, 16k, then NIAH 2k-8k. Each group is its own folder
under OUT and resumes by itself; seed3/ and seed4/ hold their rows.
"""
import sys
import time
from pathlib import Path

from jobs.demo import DemoConfig
from jobs.evaluate import evaluate
from jobs.generate import generate
from jobs.train import launch, prepare_run

if __name__ == "__main__":
    seed, out = int(sys.argv[1]), Path(sys.argv[2])
    config = DemoConfig.load("results/smollm2-swa/run9/config.yaml").with_seed(seed)
    config.train.engine.precision = "fp32"
    start = time.perf_counter()
    print(generate(config.generate, out / "corpus"), flush=True)
    print("generate s", round(time.perf_counter() - start, 1), flush=True)
    start = time.perf_counter()
    code = launch(prepare_run(corpus_dir=out / "corpus", run_dir=out / "run", config=config.train), "local")
    print("train s", round(time.perf_counter() - start, 1), flush=True)
    if code != 0:
        sys.exit(code)
    emr = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
    groups = {f"hotpotqa-{n}": {"tasks": ["hotpotqa"], "hotpotqa_lengths": [n]} for n in (2048, 4096, 8192, 16384)}
    groups["niah-2k-8k"] = {"tasks": ["niah"], "lengths": [2048, 4096, 8192]}
    for name, update in groups.items():
        start = time.perf_counter()
        evaluate(out / "run" / "export", out / name, emr.model_copy(update=update))
        print(name, "s", round(time.perf_counter() - start, 1), flush=True)
