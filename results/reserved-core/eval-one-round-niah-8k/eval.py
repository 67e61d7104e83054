"""Run 8's one-round NIAH 8k group again with vLLM's worker on both cores (pipeline/cpu_cores.py, 03a5a08):
the same documents, to compare seconds per document and predictions with the one-core read."""
import sys
from pathlib import Path
from jobs.demo import DemoConfig
from jobs.evaluate import evaluate

if __name__ == "__main__":
    out = Path(sys.argv[1])  # the run-8 folder: run/export holds the student
    config = DemoConfig.load("jobs/configs/smollm2_swa.yaml").evaluate
    config = config.model_copy(update={"modes": ["one-round"], "teacher": "", "tasks": ["niah"], "lengths": [8192]})
    evaluate(out / "run" / "export", out / "eval-one-round-8k-both-cores", config)
