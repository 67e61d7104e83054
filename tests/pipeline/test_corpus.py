import json

import pytest

from pipeline.corpus import CorpusWriter, corpus_statistics, read_corpus
from pipeline.rejects import Reject

from tests.pipeline.conftest import make_trajectory


def shard_files(corpus):
    return sorted(p.name for p in (corpus / "data").iterdir())


def test_shards_manifest_and_read_back(tmp_path):
    trajectories = [make_trajectory(f"doc-{i}", n_chunks=3, n_rounds=1 + i % 3) for i in range(5)]
    with CorpusWriter(tmp_path, shard_size=2, extra={"config_hash": "abc"}) as writer:
        for t in trajectories:
            assert writer.write(t)
        assert not writer.write(trajectories[0]), "a document is written once"
    assert shard_files(tmp_path) == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"] == {"config_hash": "abc"}
    assert manifest["counts"] == {"shards": 3, "trajectories": 5, "rejects": 0}
    assert [s["rows"] for s in manifest["shards"]] == [2, 2, 1]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert manifest["total_tokens"] == {"prompt": sum(t.prompt_tokens for t in trajectories),
                                        "completion": sum(t.completion_tokens for t in trajectories)}
    assert list(read_corpus(tmp_path)) == trajectories


def test_hugging_face_datasets_reads_the_shards(tmp_path):
    import datasets

    with CorpusWriter(tmp_path / "corpus", shard_size=2) as writer:
        for i in range(3):
            writer.write(make_trajectory(f"doc-{i}"))
        writer.reject(Reject("bad", "context", "is empty", "drop it", stage="read"))
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "corpus" / "data" / "train-*.parquet"),
                               split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3 and ds[0]["document_id"] == "doc-0"
    assert ds[0]["rounds"][0]["summary"]["target"] == "find the number"
    folder = datasets.load_dataset(str(tmp_path / "corpus"), cache_dir=str(tmp_path / "cache2"))
    assert folder["train"]["document_id"] == ["doc-0", "doc-1", "doc-2"]


def test_resume_skips_done_documents_and_discards_a_partial_shard(tmp_path):
    with CorpusWriter(tmp_path, shard_size=2) as writer:
        for i in range(4):
            writer.write(make_trajectory(f"doc-{i}"))
        writer.reject(Reject("doc-9", "answer", "scored 0.00", "none needed", stage="filter"))
        writer.reject(Reject("doc-0", "id", "repeats an earlier id", "use unique ids", stage="read"))
    finished = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    (tmp_path / "data" / ".train-00002.parquet.tmp").write_bytes(b"PAR1 torn")  # a crash mid-shard

    writer = CorpusWriter(tmp_path, shard_size=2)
    assert writer.done_ids == {"doc-0", "doc-1", "doc-2", "doc-3", "doc-9"}
    assert not (tmp_path / "data" / ".train-00002.parquet.tmp").exists()
    assert not writer.write(make_trajectory("doc-1"))
    assert writer.has_reject(Reject("doc-9", "answer", "scored 0.00", "none needed", stage="filter"))
    assert not writer.reject(Reject("doc-9", "answer", "scored 0.00", "none needed", stage="filter"))
    for i in range(4, 7):
        writer.write(make_trajectory(f"doc-{i}"))
    writer.close()
    for name, content in finished.items():
        assert (tmp_path / "data" / name).read_bytes() == content, f"{name} was rewritten"
    ids = [t.document_id for t in read_corpus(tmp_path)]
    assert ids == [f"doc-{i}" for i in range(7)]
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 2


def test_a_partial_last_shard_is_reopened_so_interrupted_writing_gives_the_same_bytes(tmp_path):
    trajectories = [make_trajectory(f"doc-{i}", n_chunks=3, n_rounds=1 + i % 3) for i in range(7)]
    with CorpusWriter(tmp_path / "once", shard_size=3) as writer:
        for t in trajectories:
            writer.write(t)
    # Stopped three times, each time after a shard boundary or in the middle of one.
    for stop in (1, 4, 5, 7):
        with CorpusWriter(tmp_path / "stopped", shard_size=3) as writer:
            for t in trajectories[:stop]:
                writer.write(t)
    for name in ("manifest.json", "statistics.json", "data/train-00000.parquet", "data/train-00001.parquet",
                 "data/train-00002.parquet"):
        assert (tmp_path / "stopped" / name).read_bytes() == (tmp_path / "once" / name).read_bytes(), name
    assert shard_files(tmp_path / "stopped") == shard_files(tmp_path / "once")
    assert [t.document_id for t in read_corpus(tmp_path / "stopped")] == [f"doc-{i}" for i in range(7)]


def test_a_shard_renamed_before_the_manifest_was_updated_is_adopted(tmp_path):
    with CorpusWriter(tmp_path, shard_size=1) as writer:
        writer.write(make_trajectory("a"))
        writer.write(make_trajectory("b"))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"] = manifest["shards"][:1]  # the crash came between rename and manifest write
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    writer = CorpusWriter(tmp_path, shard_size=1)
    assert writer.done_ids == {"a", "b"}
    writer.close()
    assert [t.document_id for t in read_corpus(tmp_path)] == ["a", "b"]


def test_another_config_and_a_changed_shard_are_refused(tmp_path):
    with CorpusWriter(tmp_path, shard_size=1, extra={"config_hash": "one"}) as writer:
        writer.write(make_trajectory("a"))
    with pytest.raises(ValueError, match="new output folder"):
        CorpusWriter(tmp_path, extra={"config_hash": "two"})
    shard = tmp_path / "data" / "train-00000.parquet"
    shard.write_bytes(shard.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="changed since it was written"):
        list(read_corpus(tmp_path))
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        list(read_corpus(tmp_path / "nothing"))


def test_statistics(tmp_path):
    with CorpusWriter(tmp_path, shard_size=10) as writer:
        writer.write(make_trajectory("a", n_chunks=4, n_rounds=2))
        writer.write(make_trajectory("b", n_chunks=4, n_rounds=4, passed=False, source="niah"))
        writer.write(make_trajectory("c", n_chunks=2, n_rounds=2))
        writer.reject(Reject("d", "answer", "wrong", "none needed", stage="filter"))
    stats = corpus_statistics(tmp_path)
    assert json.loads((tmp_path / "statistics.json").read_text()) == stats
    assert stats["documents"] == 3 and stats["rejects"] == 1 and stats["rejects_by_stage"] == {"filter": 1}
    assert stats["acceptance_rate"] == pytest.approx(3 / 4)
    assert stats["answer_pass_rate"] == pytest.approx(2 / 3)
    assert stats["rounds_per_document"]["mean"] == pytest.approx(8 / 3) and stats["rounds_per_document"]["max"] == 4
    assert stats["rounds_histogram"] == {"2": 2, "4": 1}
    assert stats["early_stop_rate"] == pytest.approx(1 / 3)
    assert stats["summary_words"]["count"] == 8
    assert stats["teacher_tokens"]["completion"] == 80
    assert stats["teacher_tokens"]["prompt"] == (100 + 101) + (100 + 101 + 102 + 103) + (100 + 101)
    assert stats["sources"] == {"niah": 1, "test": 2}
