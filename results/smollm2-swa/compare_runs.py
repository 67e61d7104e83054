"""Every SmolLM2 run's EMR score minus the parent's, paired by document (`jobs.eval_report.aggregate`'s
`minus_teacher`), from the committed predictions:

    python results/smollm2-swa/compare_runs.py results/smollm2-swa > results/smollm2-swa/compare_runs.md

The parent's rows are the headline folder's (mode `teacher`); every run read the same documents.
"""

import json
import sys
from pathlib import Path

from jobs.eval_report import aggregate

# Each run's folders of predictions (run 8's HotpotQA was read later, by another evaluation of the same student).
RUNS = {"third (W=512)": ["."], "fifth (W=1024)": ["run5"], "sixth (W=1024)": ["run6"], "seventh (W=1024)": ["run7"],
        "run 8 (third's recipe, fp32)": ["run8-demo", "run8-demo/emr-hotpotqa"], "run 9 (seed 1)": ["run9"],
        "run 9 seed 2": ["run9/seed2"]}


def predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def main(results: Path) -> None:
    parent = [r for r in predictions(results) if r["mode"] == "teacher"]
    cells: dict[tuple, dict[str, str]] = {}
    for name, folders in RUNS.items():
        student = [r for folder in folders for r in predictions(results / folder) if r["mode"] == "emr"]
        for row in aggregate(student + parent):
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
