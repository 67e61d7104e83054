"""The embedded demo, shortened (--quick): every stage runs for real and produces what the next one reads."""

from __future__ import annotations

import json

import pytest

from jobs.cli import main
from jobs.demo import target_verdict


@pytest.mark.slow
def test_quick_demo_hands_each_stage_to_the_next(tmp_path, capsys):
    import datasets
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import students  # noqa: F401
    from pipeline.corpus import read_corpus

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    printed = capsys.readouterr().out

    # generate -> corpus the train job read
    manifest = json.loads((out / "corpus" / "manifest.json").read_text())
    trajectories = list(read_corpus(out / "corpus"))
    assert manifest["counts"]["trajectories"] == len(trajectories) > 0
    assert {t.source for t in trajectories} == {"niah", "hotpotqa"}
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["corpus"] == str((out / "corpus").resolve())

    # train -> an exported student the evaluation loaded
    metrics = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics][-1] == 3
    window = json.loads((out / "run" / "export" / "config.json").read_text())["sliding_window"]

    # evaluate -> rows for both modes, the table printed
    rows = json.loads((out / "eval" / "results.json").read_text())
    assert {r["mode"] for r in rows} == {"emr", "one-round"}
    assert all(r["window"] == window and r["n"] >= 1 for r in rows)
    assert "| niah | 256 | 4x |" in printed and ("target" in printed)

    # publish -> Hub-layout folders that load back, the model card carrying the evaluation
    # A fresh cache: datasets keys its cache of a local folder on the folder name and the card config, not the files.
    published = datasets.load_dataset(str(out / "hub" / "dataset"), split="train", cache_dir=str(tmp_path / "cache"))
    assert published.num_rows == len(trajectories)
    model = AutoModelForCausalLM.from_pretrained(out / "hub" / "model")
    assert model.config.sliding_window == window
    AutoTokenizer.from_pretrained(out / "hub" / "model")
    card = ModelCard.load(out / "hub" / "model" / "README.md")
    assert "| niah | emr | 256 |" in card.text
    # A local corpus is named as a folder, not as a Hub dataset: no `datasets` metadata, no huggingface.co link.
    assert card.data.datasets is None and f"Trained on the corpus in `{out / 'hub' / 'dataset'}`" in card.text
    assert "huggingface.co/datasets" not in card.text

    # rerunning resumes: nothing is generated twice, training is already at its last step
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    assert len(list(read_corpus(out / "corpus"))) == len(trajectories)
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == len(metrics)


def test_verdict_is_read_from_the_rows():
    row = {"task": "niah", "window": 128}
    rows = [{**row, "mode": "emr", "length": 2048, "score": 97.0}, {**row, "mode": "one-round", "length": 2048,
                                                                     "score": 10.0},
            {**row, "mode": "emr", "length": 512, "score": 40.0}]
    assert target_verdict(rows).startswith("target MET") and "at least 97.0%" in target_verdict(rows)
    rows[0]["score"] = 80.0
    assert target_verdict(rows).startswith("target MISSED")
    assert target_verdict(rows[2:]).startswith("target not measured")


def test_another_seed_changes_corpus_weights_and_order_but_never_the_evaluation():
    from jobs.demo import FULL_CONFIG, DemoConfig

    config = DemoConfig.load(FULL_CONFIG)
    seeded = config.with_seed(7)
    assert (seeded.generate.seed, seeded.train.student.seed, seeded.train.data.seed) == (7, 7, 7)
    assert seeded.evaluate == config.evaluate and seeded.train.max_steps == config.train.max_steps
    assert config.generate.seed != 7  # the loaded config is left as it was
    with pytest.raises(ValueError, match="evaluation's seed"):
        config.with_seed(config.evaluate.seed)


def test_a_publish_repo_id_that_is_not_a_hub_id_is_refused_naming_the_field(tmp_path):
    import yaml

    from jobs.demo import QUICK_CONFIG, DemoConfig

    values = yaml.safe_load(QUICK_CONFIG.read_text())
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({**values, "publish": {"model_repo_id": "/work/out/hub/model"}}))
    with pytest.raises(ValueError, match=r"publish\.model_repo_id.*not a Hub repository id.*Fix: write it as OWNER/NAME"):
        DemoConfig.load(path)
    path.write_text(yaml.safe_dump({**values, "publish": {"model_repo_id": "someone/tiny-swa"}}))
    assert DemoConfig.load(path).publish.model_repo_id == "someone/tiny-swa"
