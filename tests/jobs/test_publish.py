"""Publishing: a local folder laid out as a Hub repository, and the Hub requests that would be sent (not sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from jobs.cli import main

TOKEN = "hf_secret_test_token_0123456789"


class RecordedHub:
    """HfApi's create_repo / upload_folder intercepted: what would be sent is recorded, nothing leaves the machine."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, "token": api.token, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(api, **kwargs):
            folder = Path(kwargs["folder_path"])
            files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            hub.calls.append(("upload_folder", {**kwargs, "token": api.token, "files": files}))

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_model_to_local_folder_loads_back_with_its_card(exported_student, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import students  # noqa: F401

    out = tmp_path / "hub" / "model"
    assert main(["publish", "--model", str(exported_student), "--to", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "smooth-reading" in card.data.tags

    original = AutoModelForCausalLM.from_pretrained(exported_student).eval()
    published = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("<query>Who wrote it?\n<chunk>Some text.<summary>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(original(ids).logits, published(ids).logits)


def test_model_to_hub_creates_private_repo_and_uploads_card_and_weights(exported_student, monkeypatch, capsys):
    hub = RecordedHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["publish", "--model", str(exported_student), "--repo-id", "someone/tiny-swa"]) == 0

    (name, create), (name2, upload) = hub.calls
    assert (name, name2) == ("create_repo", "upload_folder")
    assert create["repo_id"] == "someone/tiny-swa" and create["repo_type"] == "model"
    assert create["private"] is True and create["token"] == TOKEN
    assert upload["repo_id"] == "someone/tiny-swa" and upload["repo_type"] == "model" and upload["token"] == TOKEN
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(upload["files"])
    assert upload["files"]["model.safetensors"] == (exported_student / "model.safetensors").read_bytes()
    assert 'from_pretrained("someone/tiny-swa")' in upload["files"]["README.md"].decode()
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_public_flag_makes_a_public_repo(exported_student, monkeypatch):
    hub = RecordedHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    main(["publish", "--model", str(exported_student), "--repo-id", "someone/tiny-swa", "--public"])
    assert hub.calls[0][1]["private"] is False


def test_hub_without_token_fails_before_any_request(exported_student, monkeypatch, tmp_path):
    import huggingface_hub.constants

    hub = RecordedHub(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no saved login
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        main(["publish", "--model", str(exported_student), "--repo-id", "someone/tiny-swa"])
    assert hub.calls == []


def test_a_saved_login_is_used_when_HF_TOKEN_is_unset(exported_student, monkeypatch, tmp_path):
    import huggingface_hub.constants

    hub = RecordedHub(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    (tmp_path / "token").write_text(TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    main(["publish", "--model", str(exported_student), "--repo-id", "someone/tiny-swa"])
    assert [call[1]["token"] for call in hub.calls] == [TOKEN, TOKEN]


def test_local_folder_laid_out_for_a_repo_id_uploads_nothing(exported_student, rule_corpus, monkeypatch, tmp_path):
    hub = RecordedHub(monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)  # nothing is uploaded, so no token is asked for
    model, dataset = tmp_path / "model", tmp_path / "dataset"
    assert main(["publish", "--dataset", str(rule_corpus), "--to", str(dataset), "--repo-id", "someone/corpus"]) == 0
    assert main(["publish", "--model", str(exported_student), "--to", str(model), "--repo-id", "someone/tiny-swa",
                 "--trained-on", "someone/corpus"]) == 0
    assert hub.calls == []
    card = ModelCard.load(model / "README.md")
    assert card.data.model_name == "tiny-swa" and card.data.datasets == ["someone/corpus"]
    assert 'from_pretrained("someone/tiny-swa")' in card.text and str(model) not in card.text
    assert "(https://huggingface.co/datasets/someone/corpus)" in card.text
    assert 'load_dataset("someone/corpus"' in (dataset / "README.md").read_text()


def test_a_local_corpus_is_named_as_a_folder_not_linked_as_a_hub_dataset(exported_student, rule_corpus, tmp_path):
    corpus = tmp_path / "hub" / "dataset"
    main(["publish", "--dataset", str(rule_corpus), "--to", str(corpus)])
    main(["publish", "--model", str(exported_student), "--to", str(tmp_path / "model"), "--trained-on", str(corpus)])
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert card.data.datasets is None and "huggingface.co/datasets" not in card.text
    assert f"Trained on the corpus in `{corpus}`." in card.text


@pytest.mark.parametrize("arguments, message", [
    ([], "nowhere to publish"),
    (["--to", "out", "--public"], "--public is for an upload"),
])
def test_publish_without_a_destination_or_public_without_upload_is_refused(exported_student, arguments, message,
                                                                             tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--model", str(exported_student), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_model_folder_without_config_is_refused(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(["publish", "--model", str(tmp_path / "weights"), "--to", str(tmp_path / "out")]) == 2
    assert "config.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dataset_to_local_folder_reads_back_with_load_dataset(rule_corpus, tmp_path):
    import datasets

    from pipeline.corpus import read_corpus

    out = tmp_path / "hub" / "dataset"
    assert main(["publish", "--dataset", str(rule_corpus), "--to", str(out)]) == 0
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000.parquet", "train-00001.parquet"]
    assert {"README.md", "manifest.json", "statistics.json", "config.yaml"} <= {p.name for p in out.iterdir()}
    assert not (out / "rejects.jsonl").exists()

    # A fresh cache: datasets keys its cache of a local folder on the folder name and the card config, not the files.
    loaded = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    expected = list(read_corpus(rule_corpus))
    assert loaded.num_rows == len(expected) == 5
    assert loaded["document_id"] == [t.document_id for t in expected]
    assert loaded[0]["rounds"][0]["summary"]["target"] == expected[0].rounds[0].summary.target


def test_republishing_a_smaller_corpus_leaves_no_stale_shards(rule_corpus, tmp_path):
    from pipeline.corpus import CorpusWriter, read_corpus

    out = tmp_path / "dataset"
    main(["publish", "--dataset", str(rule_corpus), "--to", str(out)])
    smaller = tmp_path / "smaller"
    with CorpusWriter(smaller, shard_size=10) as writer:
        writer.write(next(read_corpus(rule_corpus)))
    main(["publish", "--dataset", str(smaller), "--to", str(out)])
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000.parquet"]


def test_dataset_to_hub_uploads_card_and_shards_to_a_private_dataset_repo(rule_corpus, monkeypatch, capsys):
    hub = RecordedHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["publish", "--dataset", str(rule_corpus), "--repo-id", "someone/niah-corpus"]) == 0
    (_, create), (_, upload) = hub.calls
    assert create["repo_id"] == "someone/niah-corpus" and create["repo_type"] == "dataset" and create["private"] is True
    assert upload["repo_type"] == "dataset"
    assert upload["files"]["data/train-00000.parquet"] == (rule_corpus / "data" / "train-00000.parquet").read_bytes()
    assert 'load_dataset("someone/niah-corpus"' in upload["files"]["README.md"].decode()
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_folder_without_shards_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["publish", "--dataset", str(tmp_path / "empty"), "--to", str(tmp_path / "out")]) == 2
    assert "train-*.parquet" in capsys.readouterr().err
