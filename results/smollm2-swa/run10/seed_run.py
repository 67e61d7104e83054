"""Run 10's recipe at another seed (session 23, 2026-12-06, a 2-core Xeon with AMX): a new draw of the corpus, of the
new tokens' initial weights and of the data order.

    python results/smollm2-swa/run10/seed_run.py SEED OUT

generate + train on config.yaml here at SEED (`DemoConfig.with_seed`: the evaluation's seed stays 1, so the
documents are the demo's), `precision: auto` (bf16 on AMX, as the seed-1 demo trained); then EMR groups with the
demo's evaluation settings, one at a time, alone on the machine: HotpotQA 2k, 4k, 8k, 16k, then NIAH 2k-8k. Each
group is its own folder under OUT and resumes by itself.
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
    config = DemoConfig.load(Path(__file__).with_name("config.yaml")).with_seed(seed)
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
