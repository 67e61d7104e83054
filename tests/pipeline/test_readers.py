import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.documents import Document
from pipeline.readers import documents_only, input_kind, read_documents
from pipeline.rejects import Reject, read_rejects, write_rejects

GOOD = [
    {"id": "a", "question": "Who?", "context": "Alice went home.", "answers": ["Alice"]},
    {"id": "b", "question": "Where?", "context": "Bob went to Paris.", "answers": ["Paris"],
     "evidence": [{"start": 12, "end": 17, "text": "Paris"}], "source": "test", "license": "CC0"},
]


def write_jsonl(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_bad_records_become_rejects_and_the_rest_is_read(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [
        json.dumps(GOOD[0]).encode(),
        b'{"id": "x", "question": "q", "context": "caf\xe9", "answers": ["y"]}',  # latin-1, not UTF-8
        b"{not json",
        json.dumps({"id": "c", "question": "Why?", "context": "   ", "answers": ["z"]}).encode(),
        json.dumps({"id": "d", "context": "text", "answers": ["z"]}).encode(),
        json.dumps(GOOD[0] | {"context": "another text"}).encode(),  # duplicated id
        b"[1, 2]",
        json.dumps(GOOD[1]).encode(),
    ])
    items = list(read_documents(path))
    docs = [i for i in items if isinstance(i, Document)]
    rejects = {r.record: r for r in items if isinstance(r, Reject)}
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].context == "Alice went home." and docs[1].evidence[0].text == "Paris"
    assert set(rejects) == {2, 3, 4, 5, 6, 7}
    assert "not UTF-8" in rejects[2].reason and "UTF-8" in rejects[2].fix
    assert "not valid JSON" in rejects[3].reason
    assert (rejects[4].document_id, rejects[4].field) == ("c", "context")
    assert (rejects[5].document_id, rejects[5].field) == ("d", "question")
    assert (rejects[6].document_id, rejects[6].field) == ("a", "id") and "record 1" in rejects[6].reason
    assert rejects[7].field == "<record>"
    assert all(r.source == str(path) and r.stage == "read" and r.fix for r in rejects.values())
    assert "document 'c'" in str(rejects[4]) and "Fix:" in str(rejects[4])


def test_a_byte_order_mark_on_the_first_line_is_accepted(tmp_path):
    path = write_jsonl(tmp_path / "bom.jsonl", [b"\xef\xbb\xbf" + json.dumps(GOOD[0]).encode()])
    assert [d.id for d in read_documents(path)] == ["a"]


def test_parquet_is_read_with_the_same_checks(tmp_path):
    rows = [dict(GOOD[0], evidence=[]), dict(GOOD[1]), dict(GOOD[1], id="e", context="")]
    for row in rows:
        row.setdefault("source", ""), row.setdefault("license", "")
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    items = list(read_documents(path))
    assert [i.id for i in items if isinstance(i, Document)] == ["a", "b"]
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert (reject.document_id, reject.field, reject.record) == ("e", "context", 3)


def test_saved_hf_dataset_is_read(tmp_path):
    import datasets

    rows = [GOOD[0] | {"evidence": []}, GOOD[1] | {"source": "", "license": ""}]
    rows[0] |= {"source": "", "license": ""}
    datasets.Dataset.from_list(rows + [rows[0]]).save_to_disk(str(tmp_path / "ds"))
    assert input_kind(tmp_path / "ds") == "hf_dataset"
    items = list(read_documents(tmp_path / "ds"))
    assert [i.id for i in items if isinstance(i, Document)] == ["a", "b"]
    assert [(r.document_id, r.field) for r in items if isinstance(r, Reject)] == [("a", "id")]


def test_unknown_inputs_are_clear_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"\*\.jsonl"):
        list(read_documents(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="save_to_disk"):
        list(read_documents(tmp_path))
    with pytest.raises(FileNotFoundError):
        list(read_documents(tmp_path / "missing.jsonl"))


def test_rejects_file_appends_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "out" / "rejects.jsonl"
    first = Reject("a", "context", "is empty", "drop it", stage="read")
    assert write_rejects(path, [first]) == 1
    with path.open("a") as f:
        f.write('{"document_id": "torn", "fi')  # a crash mid-write
    second = Reject("", "<line>", "is not valid JSON", "fix the line", source="in.jsonl", record=7)
    write_rejects(path, [second])
    assert read_rejects(path) == [first, second]
    assert read_rejects(tmp_path / "none.jsonl") == []


def test_documents_only_collects_the_rejects(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD[0]).encode(), b"oops"])
    rejects: list[Reject] = []
    assert [d.id for d in documents_only(read_documents(path), rejects)] == ["a"]
    assert [r.record for r in rejects] == [2]
