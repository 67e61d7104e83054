"""Evaluation results as a person reads them: rows per (task, mode, length) with 95% intervals, the tables of
results.md (scores, then seconds per document) and accuracy.png."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.metrics import interval95, paired_difference95

MODES: tuple[str, ...] = ("emr", "one-round", "teacher")
MODE_TITLES: dict[str, str] = {"emr": "EMR (Smooth Reading)", "one-round": "one-round", "teacher": "teacher one-round"}


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-document records -> one row per (task, mode, length): mean score in percent, its 95% interval, the count;
    for a student's row, `minus_teacher`: its score minus the teacher's on the documents both read, paired."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["mode"], r["length"])].append(r)
    rows = []
    for (task, mode, length), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MODES.index(kv[0][1]), kv[0][2])):
        first = group[0]
        low, high = interval95([r["score"] for r in group])
        rows.append({
            "task": task, "mode": mode, "length": length, "window": first["window"],
            "chunk_tokens": first["chunk_tokens"], "metric": first["metric"], "model": first["model"],
            "score": round(100.0 * sum(r["score"] for r in group) / len(group), 2), "n": len(group),
            "ci95": [round(100.0 * low, 1), round(100.0 * high, 1)],
            "seconds_per_document": round(sum(r["seconds"] for r in group) / len(group), 3),
        })
        teacher = {} if mode == "teacher" else {
            r["document_id"]: r["score"] for r in groups.get((task, "teacher", length), [])}
        paired = [(r["score"], teacher[r["document_id"]]) for r in group if teacher and r["document_id"] in teacher]
        if paired:
            difference, low, high = paired_difference95([p[0] for p in paired], [p[1] for p in paired])
            rows[-1]["minus_teacher"] = {"score": round(100.0 * difference, 2), "n": len(paired),
                                         "ci95": [round(100.0 * low, 1), round(100.0 * high, 1)]}
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per (task, length), one column per mode, with each cell `score [95% interval] (n)`; where the
    teacher read the same documents, a last column with EMR minus teacher, paired by document."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        cells[(r["task"], r["length"])][r["mode"]] = r
    windows = sorted({r["window"] for r in rows if r["mode"] != "teacher" and r["window"]})
    paired = any("minus_teacher" in r for r in rows if r["mode"] == "emr")
    titles = [MODE_TITLES[m] for m in modes] + (["EMR - teacher, paired"] if paired else [])
    lines = ["| task | length (tokens) | length / window | " + " | ".join(titles) + " |",
             "|---|---:|---:|" + "---:|" * len(titles)]
    for (task, length), by_mode in sorted(cells.items()):
        ratio = f"{length / windows[0]:g}x" if len(windows) == 1 else ""
        values = [_cell(by_mode[m]) if m in by_mode else "" for m in modes]
        if paired:
            difference = by_mode.get("emr", {}).get("minus_teacher")
            values.append(_cell(difference, signed=True) if difference else "")
        lines.append(f"| {task} | {length} | {ratio} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def cost_table(rows: list[dict[str, Any]]) -> str:
    """Seconds per document, one line per (task, length), one column per mode."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        cells[(r["task"], r["length"])][r["mode"]] = r["seconds_per_document"]
    lines = ["| task | length (tokens) | " + " | ".join(f"{MODE_TITLES[m]} s / doc" for m in modes) + " |",
             "|---|---:|" + "---:|" * len(modes)]
    for (task, length), by_mode in sorted(cells.items()):
        lines.append(f"| {task} | {length} | " + " | ".join(f"{by_mode[m]:.1f}" if m in by_mode else "" for m in modes)
                     + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any], signed: bool = False) -> str:
    low, high = row["ci95"]
    f = "+.1f" if signed else ".1f"
    return f"{row['score']:{f}} [{low:{f}}, {high:{f}}] ({row['n']})"


def write_results(rows: list[dict[str, Any]], output: Path, header: str) -> None:
    """results.json, results.md and accuracy.png from the rows so far (predictions.jsonl is appended as groups end)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (output / "results.md").write_text(
        f"{header}\n\nScores in percent, their 95% interval in square brackets (Wilson for right/wrong scores, "
        "bootstrap for graded ones; for EMR - teacher, a bootstrap of the per-document differences), documents in "
        "round brackets; metric per task: "
        + ", ".join(sorted({f"{r['task']}: {r['metric']}" for r in rows})) + ".\n\n" + markdown_table(rows)
        + "\nWall seconds per document (a batched reader's time shared by the documents it read together):\n\n"
        + cost_table(rows)
    )
    plot_accuracy(rows, output / "accuracy.png")


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> None:
    """Score against length, one panel per task, one line per mode; the student's window as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for mode in MODES:
            points = sorted((r["length"], r["score"]) for r in rows if r["task"] == task and r["mode"] == mode)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=MODE_TITLES[mode])
        windows = {r["window"] for r in rows if r["task"] == task and r["mode"] != "teacher" and r["window"]}
        for w in windows:
            ax.axvline(w, color="grey", linestyle="--", linewidth=1, label=f"student window ({w})")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("score (%)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
