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
