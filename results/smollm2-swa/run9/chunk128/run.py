"""EMR HotpotQA 2k with chunks of 128 tokens, against the demo's 256, on run 9's two students (session 21,
2026-12-05, main 982a74c):

    python results/smollm2-swa/run9/chunk128/run.py RUN9_OUT RUN9_SEED2_OUT OUT

RUN9_OUT and RUN9_SEED2_OUT are the folders ../run.py and ../seed2/run.py trained in (their run/export is read).
Writes OUT/seed{1,2}-c{128,256}-2048; seed 1 with chunks of 256 is the demo's row (../../predictions.jsonl), so it is
not read again. seed2-c256-2048 went to ../seed2/predictions.jsonl, the two c128 groups to seed1/ and seed2/ here.
The session had also queued 4k; it stopped that once 2k showed no gain, to read seed 2's HotpotQA 4k-16k instead.
"""
import sys
import time
from pathlib import Path

from jobs.demo import DemoConfig
from jobs.evaluate import evaluate


if __name__ == "__main__":
    s1, s2, out = (Path(arg) for arg in sys.argv[1:4])
    config = DemoConfig.load("results/smollm2-swa/run9/config.yaml")
    hotpotqa = config.evaluate.model_copy(update={"modes": ["emr"], "teacher": "", "tasks": ["hotpotqa"]})
    students = {"seed1": s1 / "run" / "export", "seed2": s2 / "run" / "export"}
    for seed, chunk in (("seed1", 128), ("seed2", 256), ("seed2", 128)):
        start = time.perf_counter()
        settings = hotpotqa.model_copy(update={"hotpotqa_lengths": [2048], "chunk_tokens": chunk})
        evaluate(students[seed], out / f"{seed}-c{chunk}-2048", settings)
        print(f"{seed} chunks {chunk} HotpotQA 2048 s", round(time.perf_counter() - start, 1), flush=True)
