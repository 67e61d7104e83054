"""Dataset cards: Hub metadata (licence, size, configs) and provenance filled from the corpus' own files."""

from __future__ import annotations

import json

from data_cards import dataset_card
from data_cards.cards import size_category


def test_metadata_points_at_the_shards_and_names_the_strictest_licence(rule_corpus):
    card = dataset_card(rule_corpus, load_path="someone/niah-corpus")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-sa-4.0"  # HotpotQA paragraphs are share-alike
    assert data["language"] == ["en"]
    assert data["size_categories"] == ["n<1K"]
    assert "question-answering" in data["task_categories"]
    assert data["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]


def test_body_carries_provenance_from_manifest_statistics_and_records(rule_corpus):
    text = dataset_card(rule_corpus, load_path="someone/niah-corpus").text
    manifest = json.loads((rule_corpus / "manifest.json").read_text())
    assert manifest["counts"]["trajectories"] == 5 and manifest["counts"]["rejects"] == 1
    assert "**Trajectories:** 5 in 2 parquet shard(s)" in text
    assert "accepted 5, rejected 1" in text and "(acceptance 83.3%)" in text
    assert "| niah | 3 | CC BY-SA 4.0 |" in text and "| hotpotqa | 2 | CC BY-SA 4.0 |" in text
    from teachers.rules import RuleTeacher

    assert RuleTeacher().rules_sha256 in text  # the prompt (rules) hash that wrote every record
    assert "part `rules`: 60-120 tokens" in text  # the chunk-size range from the generation config
    assert "| plan: field `question` | 1 |" in text  # reject reasons
    assert 'load_dataset("someone/niah-corpus", split="train")' in text
    assert "kind: niah" in text  # the config, to reproduce


def test_size_categories_follow_the_hub_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_verifier_counts_and_hinted_acceptance_reach_statistics_and_the_card(tmp_path):
    import dataclasses

    from pipeline.chunking import WordEstimate, plan_chunks
    from pipeline.corpus import CorpusWriter, corpus_statistics
    from pipeline.qa_data import SQUAD_LICENSE
    from pipeline.rejects import Reject
    from pipeline.sources import niah_documents
    from teachers.rules import RuleTeacher

    docs = niah_documents([300], [0.0, 0.5, 1.0], 1, 0)
    trajectories = [RuleTeacher().read_now(d, plan_chunks(d, 60, 120, 0, WordEstimate()), 64) for d in docs]
    hinted = dataclasses.replace(trajectories[2], source="squad",
                                 teacher={**trajectories[2].teacher, "hint": "evidence", "hint_template": "evidence_v1",
                                          "hint_fixed": ["target", "answer"]})
    with CorpusWriter(tmp_path, shard_size=8, extra={"config_hash": "0123456789abcdef"}) as writer:
        for t in trajectories[:2] + [hinted]:
            writer.write(t)
        writer.reject(Reject("h1", "round 0", "copies", "none", stage="filter",
                             checks=("target_restates_question", "fields_distinct"), hint="evidence"))
        writer.reject(Reject("h2", "answer", "wrong", "none", stage="filter", checks=("answer",), hint="evidence"))
        writer.reject(Reject("h3", "round 2", "malformed", "none", stage="teacher", hint="evidence"))
        writer.reject(Reject("u1", "round 1", "leak", "none", stage="filter", checks=("clues_before_evidence",)))
        writer.reject(Reject("p1", "question", "too long", "none", stage="plan"))  # not read by the teacher
    verifier = corpus_statistics(tmp_path)["verifier"]
    assert verifier["check_failures"] == {"answer": 1, "target_restates_question": 1, "clues_before_evidence": 1,
                                          "stop_after_evidence": 0, "clues_hold_evidence": 0, "fields_distinct": 1,
                                          "hint_not_echoed": 0, "needs_context": 0}
    assert verifier["by_hint"] == {"evidence": {"accepted": 1, "rejected": 3, "acceptance_rate": 0.25},
                                   "none": {"accepted": 2, "rejected": 1, "acceptance_rate": 2 / 3}}
    text = dataset_card(tmp_path, load_path="someone/hinted").text
    assert "| `fields_distinct` | Target, Clues and Reason copy each other, or a field copies the chunk | 1 |" in text
    assert "| evidence | 1 | 3 | 25.0% |" in text and "| none | 2 | 1 | 66.7% |" in text
    assert f"| squad | 1 | {SQUAD_LICENSE} |" in text
    assert "| hint | `evidence` (rationalization" in text and "written as given: target, answer" in text
