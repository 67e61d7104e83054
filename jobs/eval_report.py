"""Evaluation results as a person reads them: rows per (task, mode, length) with 95% intervals, the tables of
results.md (scores, then seconds per document) and accuracy.png."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.metrics import interval95

MODES: tuple[str, ...] = ("emr", "one-round", "teacher")
MODE_TITLES: dict[str, str] = {"emr": "EMR (Smooth Reading)", "one-round": "one-round", "teacher": "teacher one-round"}


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-document records -> one row per (task, mode, length): mean score in percent, its 95% interval, the count."""
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
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per (task, length), one column per mode, with each cell `score [95% interval] (n)`."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        cells[(r["task"], r["length"])][r["mode"]] = r
    windows = sorted({r["window"] for r in rows if r["mode"] != "teacher" and r["window"]})
    lines = [
        "| task | length (tokens) | length / window | " + " | ".join(MODE_TITLES[m] for m in modes) + " |",
        "|---|---:|---:|" + "---:|" * len(modes),
    ]
    for (task, length), by_mode in sorted(cells.items()):
        ratio = f"{length / windows[0]:g}x" if len(windows) == 1 else ""
        values = [_cell(by_mode[m]) if m in by_mode else "" for m in modes]
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


def _cell(row: dict[str, Any]) -> str:
    low, high = row["ci95"]
    return f"{row['score']:.1f} [{low:.1f}, {high:.1f}] ({row['n']})"


def write_results(rows: list[dict[str, Any]], output: Path, header: str) -> None:
    """results.json, results.md and accuracy.png from the rows so far (predictions.jsonl is appended as groups end)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (output / "results.md").write_text(
        f"{header}\n\nScores in percent, their 95% interval in square brackets (Wilson for right/wrong scores, "
        "bootstrap for graded ones), documents in round brackets; metric per task: "
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
