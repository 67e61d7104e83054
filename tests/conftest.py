"""Fixtures every test folder shares: a tokenizer trained on the shipped data, a tiny Llama built in code, an
exported student and a rule-teacher corpus. Nothing is downloaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_models import save_tiny_llama, train_tiny_tokenizer

# Triton fixes its own library as compiled or interpreted at its first import, and any test module may import it
# first (transformers does). Without CUDA, import it here, before collection, in interpreter mode, then clear the
# variable: tests/kernels sets it per test to run the Triton kernels; every other test keeps the PyTorch path.
if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
    import triton.language  # noqa: F401

    del os.environ["TRITON_INTERPRET"]


@pytest.fixture(scope="session")
def stream_tokenizer():
    return train_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, stream_tokenizer) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), stream_tokenizer)


# An exported student and a rule-teacher corpus, shared by the card and job tests.
WINDOW = 64


@pytest.fixture(scope="session")
def exported_student(tmp_path_factory, tiny_llama_dir, stream_tokenizer) -> Path:
    """A sliding-window student converted from the tiny Llama and exported with the train job's export (card too)."""
    import torch

    from students.checkpoint import ExportInfo, export_hf
    from students.convert import convert_to_sliding_window

    torch.manual_seed(0)
    model = convert_to_sliding_window(tiny_llama_dir, window=WINDOW)
    info = ExportInfo(
        student="swa", base_model=None, corpus="corpus", corpus_manifest_hash="0123456789abcdef", steps=3,
        tokens_seen=3000, seq_len=512, losses=[(1, 5.0), (2, 4.0), (3, 3.5)], config={"student": {"window": WINDOW}},
    )
    out = tmp_path_factory.mktemp("student") / "export"
    return export_hf(model, model.state_dict(), stream_tokenizer, out, info)


@pytest.fixture(scope="session")
def rule_corpus(tmp_path_factory) -> Path:
    """A corpus as the generate job writes it (shards, manifest, statistics, rejects, config.yaml), made in-process
    with the rule teacher over a few NIAH and long-HotpotQA documents, and one rejected document."""
    return write_rule_corpus(tmp_path_factory.mktemp("corpus"))


def write_rule_corpus(out: Path) -> Path:
    import yaml

    from pipeline.chunking import WordEstimate, plan_chunks
    from pipeline.corpus import CorpusWriter
    from pipeline.rejects import Reject
    from pipeline.sources import long_hotpotqa, niah_documents
    from teachers.rules import RuleTeacher

    config = {"seed": 0, "parts": [{"name": "rules", "teacher": {"backend": "rules"},
                                    "sources": [{"kind": "niah", "lengths": [300], "depths": [0.0, 0.5, 1.0]},
                                                {"kind": "long_hotpotqa", "target_tokens": 400, "n": 2}],
                                    "chunking": {"low": 60, "high": 120, "counter": "words"}, "max_rounds": 64}]}
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    docs = niah_documents([300], [0.0, 0.5, 1.0], 1, 0) + long_hotpotqa(400, 2, 0)
    teacher = RuleTeacher()
    with CorpusWriter(out, shard_size=3, extra={"config_hash": "0123456789abcdef"}) as writer:
        for doc in docs:
            writer.write(teacher.read_now(doc, plan_chunks(doc, 60, 120, 0, WordEstimate()), 64))
        writer.reject(Reject("niah-bad", "question", "has 90 tokens, more than its budget", "shorten it", stage="plan"))
    return out
