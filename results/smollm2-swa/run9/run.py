"""Run 9: generate + train on results/smollm2-swa/run9/config.yaml, then EMR NIAH 2k-32k, then EMR HotpotQA 2k-16k (no parent)."""
import sys, time
from pathlib import Path
from jobs.demo import DemoConfig
from jobs.evaluate import evaluate
from jobs.generate import generate
from jobs.train import prepare_run, launch

if __name__ == "__main__":
    out = Path(sys.argv[1])
    config = DemoConfig.load("results/smollm2-swa/run9/config.yaml")
    t = time.perf_counter()
    print(generate(config.generate, out / "corpus"), flush=True)
    print("generate s", round(time.perf_counter() - t, 1), flush=True)
    t = time.perf_counter()
    spec = prepare_run(corpus_dir=out / "corpus", run_dir=out / "run", config=config.train)
    code = launch(spec, "local")
    print("launch code", code, "train s", round(time.perf_counter() - t, 1), flush=True)
    if code != 0:
        sys.exit(code)
    emr = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
    t = time.perf_counter()
    evaluate(out / "run" / "export", out / "eval-emr-niah", emr.model_copy(update={"tasks": ["niah"]}))
    print("niah emr s", round(time.perf_counter() - t, 1), flush=True)
    t = time.perf_counter()
    evaluate(out / "run" / "export", out / "eval-emr-hotpotqa", emr.model_copy(update={"tasks": ["hotpotqa"]}))
    print("hotpotqa emr s", round(time.perf_counter() - t, 1), flush=True)
