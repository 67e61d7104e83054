"""Every SmolLM2 run's EMR score minus the parent's, paired by document (jobs.eval_report.aggregate's minus_teacher),
from the committed predictions: `python results/smollm2-swa/compare_runs.py results/smollm2-swa > compare_runs.md`."""
import json
import sys
from pathlib import Path
from jobs.eval_report import aggregate
R = Path(sys.argv[1])
read = lambda p: [json.loads(l) for l in p.read_text().splitlines()]
headline = read(R / "predictions.jsonl")
parent = [r for r in headline if r["mode"] == "teacher"]
runs = {"third (W=512)": [r for r in headline if r["mode"] == "emr"]}
for name, folder in (("fifth (W=1024)", "run5"), ("sixth (W=1024)", "run6"), ("seventh (W=1024)", "run7")):
    runs[name] = [r for r in read(R / folder / "predictions.jsonl") if r["mode"] == "emr"]
cells = {}
for name, rows in runs.items():
    for row in aggregate(rows + parent):
        if row["mode"] == "emr" and "minus_teacher" in row:
            d = row["minus_teacher"]
            cells.setdefault((row["task"], row["length"]), {})[name] = (
                f"{d['score']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]")
print("| task | length | " + " | ".join(runs) + " |")
print("|---|---:|" + "---:|" * len(runs))
for (task, length), by in sorted(cells.items()):
    print(f"| {task} | {length} | " + " | ".join(by.get(n, "not read") for n in runs) + " |")
