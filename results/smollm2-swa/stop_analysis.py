"""Where each EMR read of long HotpotQA stopped, against where the question's evidence lies, from the committed
predictions:

    python results/smollm2-swa/stop_analysis.py results/smollm2-swa > results/smollm2-swa/stop_analysis.md

Each document is rebuilt as the evaluation built it (`jobs.eval_tasks.build_items` on the demo config's evaluation
settings) and cut into the same chunks (its chunk size) with the prepared parent's tokenizer (the students'
adds only the stream markers, which plain text never holds; the chunk counts are checked against the reads'), so
the chunks that end each gold paragraph's supporting sentences are known. A read falls in one of four cases: it
stopped before the first (it saw no evidence), between the two (one gold paragraph), after both, or it read to the
end. For each case: how many reads, the student's F1 and the parent's one-round F1 on the same documents.
"""

import bisect
import statistics
import sys
from pathlib import Path

from transformers import AutoTokenizer

from compare_runs import Q100_SEED1, Q100_SEED1_PARENT, Q100_SEED2, predictions
from jobs.demo import DemoConfig
from jobs.eval_tasks import EvalConfig, build_items
from jobs.teacher_models import resolve_model
from pipeline.chunking import TokenizerCounter, chunk_document

CONFIG = Path("jobs/configs/smollm2_swa.yaml")
# Each 100-question read: (its folder under results/smollm2-swa, the folder of the parent's rows it pairs with).
READS = {"seed 1": list(zip(Q100_SEED1, Q100_SEED1_PARENT)), "seed 2": list(zip(Q100_SEED2, Q100_SEED2))}
CASES = ("no evidence", "one gold paragraph", "both", "read to the end")


def evidence_chunks(config: EvalConfig, length: int, n: int, counter) -> dict[str, tuple[int, list[int]]]:
    """Each document's id to (its number of chunks, the indices of the chunks ending each gold paragraph's
    supporting sentences, in order)."""
    out = {}
    for item in build_items(config.model_copy(update={"tasks": ["hotpotqa"], "hotpotqa_lengths": [length],
                                                      "n_per_length": n}), counter):
        ends = chunk_document(item.doc.context, config.chunk_tokens, counter)
        out[item.doc.id] = len(ends), sorted(bisect.bisect_right(ends, e.end - 1) for e in item.doc.evidence)
    return out


def case(read: dict, evidence: list[int]) -> str:
    if not read["stopped_early"]:
        return "read to the end"
    seen = sum(read["chunks_read"] > index for index in evidence)  # chunks 0 .. chunks_read - 1 were read
    return CASES[min(seen, 2)]


def f1(scores: list[float]) -> str:
    return f"{100 * statistics.mean(scores):.1f}" if scores else "-"


def main(results: Path) -> None:
    config = DemoConfig.load(CONFIG).evaluate
    counter = TokenizerCounter(AutoTokenizer.from_pretrained(resolve_model("smollm2")))
    documents: dict[tuple[int, int], dict] = {}  # both seeds read the same documents a length: built once
    print("| run | length | share of chunks read | " + " | ".join(
        f"{name}: reads, student F1, parent F1" for name in CASES) + " |")
    print("|---|---:|---:|" + "---|" * len(CASES))
    for run, folders in READS.items():
        for folder, parent_folder in folders:
            emr = [r for r in predictions(results / folder) if r["mode"] == "emr"]
            parent = {r["document_id"]: r["score"] for r in predictions(results / parent_folder)
                      if r["mode"] == "teacher"}
            key = emr[0]["length"], len(emr)
            if key not in documents:
                documents[key] = evidence_chunks(config, *key, counter)
            chunks = documents[key]
            if any(chunks[r["document_id"]][0] != r["chunks"] for r in emr):
                raise SystemExit(f"{folder}: the rebuilt documents are not the ones read (their chunk counts differ)")
            by_case = {name: [r for r in emr if case(r, chunks[r["document_id"]][1]) == name] for name in CASES}
            share = statistics.mean(r["chunks_read"] / r["chunks"] for r in emr)
            cells = [f"{len(rows)}, {f1([r['score'] for r in rows])}, {f1([parent[r['document_id']] for r in rows])}"
                     for rows in by_case.values()]
            print(f"| {run} | {emr[0]['length']} | {share:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
