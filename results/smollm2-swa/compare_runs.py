"""Every SmolLM2 run's EMR score minus the parent's, paired by document (`jobs.eval_report.aggregate`'s
`minus_teacher`), from the committed predictions:

    python results/smollm2-swa/compare_runs.py results/smollm2-swa > results/smollm2-swa/compare_runs.md

Every run read the same documents, 20 questions a HotpotQA length; the two `q100` columns read 100 (the first 20
of them those) at 2k, 4k, 8k and 16k, each paired with the parent read on the same machine (seed 1's 8k and 16k with
seed 2's parent groups, see Q100_SEED1). Every other run is paired with the parent read in its own precision on its
own machine: the bf16 runs (the third, on a CPU with AVX512-BF16) with the third run's parent, the fp32 runs on the
AVX2-only EPYC with the headline demo's, the evaluations on the AMX Xeon (session 22: bf16 there, by `dtype: auto`)
with the demo run there, so that a difference is the student's and not one parent reading against another (the parents differ on a
few documents).
"""

import json
import sys
from functools import cache
from pathlib import Path

from jobs.eval_report import aggregate

# Each run's folders of predictions (run 8's HotpotQA was read later, by another evaluation of the same student) and
# the folders whose `teacher` rows it is paired with. The headline folder (".") is the demo of run 9 seed 1's student.
BF16_PARENT, FP32_PARENT, AMX_PARENT = ("run3",), (".",), ("demo-amx",)
Q100_SEED2 = ("q100/seed2", "q100/seed2/4096", "q100/seed2/8192", "q100/seed2/16384")
# Seed 1 read its parent at 2k and 4k; at 8k and 16k it was read without (`seed_run.py --without-parent`) and pairs
# with seed 2's groups: the same model on the same documents (at 4k the two parent readings gave the same 100 answers).
Q100_SEED1 = ("q100", "q100/4096", "q100/8192", "q100/16384")
Q100_SEED1_PARENT = ("q100", "q100/4096", "q100/seed2/8192", "q100/seed2/16384")
RUNS = {"third (W=512, bf16)": (["run3"], BF16_PARENT), "fifth (W=1024)": (["run5"], FP32_PARENT),
        "sixth (W=1024)": (["run6"], FP32_PARENT), "seventh (W=1024)": (["run7"], FP32_PARENT),
        "run 8 (third's recipe)": (["run8-demo", "run8-demo/emr-hotpotqa"], FP32_PARENT),
        "run 9 seed 1 (the demo)": (["."], FP32_PARENT), "run 9 seed 2": (["run9/seed2"], FP32_PARENT),
        "run 9 seed 3": (["run9/seed3"], AMX_PARENT), "run 9 seed 4": (["run9/seed4"], AMX_PARENT),
        "the demo on AMX (bf16 training)": (["demo-amx"], AMX_PARENT),
        "run 10 seed 1 (4x run 9's steps)": (["run10"], AMX_PARENT),
        "the demo, seed 1, 100 questions (q100)": (list(Q100_SEED1), Q100_SEED1_PARENT),
        "the demo, seed 2, 100 questions (q100/seed2)": (list(Q100_SEED2), Q100_SEED2)}


@cache  # a folder can be both a run and a parent (".", "demo-amx"): read it once
def predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def main(results: Path) -> None:
    parents = {folders: [r for folder in folders for r in predictions(results / folder) if r["mode"] == "teacher"]
               for folders in {parent for _, parent in RUNS.values()}}
    cells: dict[tuple, dict[str, str]] = {}
    for name, (folders, parent_folders) in RUNS.items():
        student = [r for folder in folders for r in predictions(results / folder) if r["mode"] == "emr"]
        for row in aggregate(student + parents[parent_folders]):
            if row["mode"] == "emr" and "minus_teacher" in row:
                d = row["minus_teacher"]
                cells.setdefault((row["task"], row["length"]), {})[name] = (
                    f"{d['score']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]")
    print("| task | length | " + " | ".join(RUNS) + " |")
    print("|---|---:|" + "---:|" * len(RUNS))
    for (task, length), by_run in sorted(cells.items()):
        print(f"| {task} | {length} | " + " | ".join(by_run.get(name, "not read") for name in RUNS) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
