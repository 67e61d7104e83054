"""The rest of seed 2's EMR grid, on the student run.py trained (session 21, 2026-12-05, main 982a74c): NIAH 32k and
HotpotQA 2k-16k with the demo's evaluation settings (chunks of 256), one group at a time, nothing else running but
the slow tests of 5767cb9 for the first 15 of NIAH 32k's 18 minutes.

    python results/smollm2-swa/run9/seed2/run_rest.py SEED2_OUT OUT

The session read HotpotQA 2k inside ../chunk128/run.py (its seed2-c256 group: the same call) and the other groups
with two scripts of these calls; the rows are appended to predictions.jsonl here. Session 22 ran this script on seed
3's folder (`../../seed_run.py`'s OUT, as SEED2_OUT and OUT both) for its NIAH 32k and HotpotQA 16k, the groups
seed_run.py had already read resuming as done.
"""
import sys
import time
from pathlib import Path

from jobs.demo import DemoConfig
from jobs.evaluate import evaluate

if __name__ == "__main__":
    s2, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = DemoConfig.load("results/smollm2-swa/run9/config.yaml")
    emr = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": ""})
    groups = {"niah-32768": {"tasks": ["niah"], "lengths": [32768]}}
    groups |= {f"hotpotqa-{n}": {"tasks": ["hotpotqa"], "hotpotqa_lengths": [n]} for n in (2048, 4096, 8192, 16384)}
    for name, update in groups.items():
        start = time.perf_counter()
        evaluate(s2 / "run" / "export", out / name, emr.model_copy(update=update))
        print(name, "s", round(time.perf_counter() - start, 1), flush=True)
