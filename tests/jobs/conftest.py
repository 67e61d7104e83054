"""Fixtures the job tests share: an exported student folder, as the train job writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

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
