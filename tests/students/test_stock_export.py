"""A sliding-window student is a stock transformers model: a process that never imports our packages loads the
export and computes what our reader computed; exports of the former custom class upgrade in place."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from jobs.cli import main as cli_main
from students.checkpoint import ExportInfo, export_hf
from students.convert import convert_to_sliding_window
from students.reading import smooth_read
from students.swa import upgrade_legacy_export

WINDOW = 32

# Run with `python -I` (no PYTHONPATH, no current directory on sys.path) and checked not to have imported any of
# our packages: only transformers and torch stand between the export and these logits.
FRESH_PROCESS = """
import sys, torch
from transformers import AutoModelForCausalLM
folder, out = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
inputs = torch.load(out + ".in.pt")
with torch.no_grad():
    logits = {name: model(ids).logits for name, ids in inputs.items()}
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("students", "kernels", "pipeline", "jobs", "teachers"))
torch.save({"logits": logits, "class": type(model).__name__, "our_modules": ours}, out)
"""


def test_export_loads_in_a_fresh_process_that_never_imports_our_packages(tiny_llama_dir, stream_tokenizer, tmp_path):
    tokenizer = stream_tokenizer
    torch.manual_seed(0)
    student = convert_to_sliding_window(tiny_llama_dir, window=WINDOW, tokenizer=tokenizer)
    info = ExportInfo(student="swa", base_model=None, corpus="c", corpus_manifest_hash="0" * 16, steps=1,
                      tokens_seen=1, seq_len=64, losses=[(1, 1.0)], config={})
    folder = export_hf(student, student.state_dict(), tokenizer, tmp_path / "export", info)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mistral"

    words = "The band was formed in Seattle in 1991 and played its first show in a small bar downtown .".split()
    chunks = [" ".join(words[(i * 5) % len(words):] + words[: (i * 5) % len(words)]) for i in range(12)]
    result = smooth_read(student, tokenizer, "Where was the band formed?", chunks, max_summary_tokens=12,
                         max_answer_tokens=6)
    stream = torch.tensor([result.stream_ids])
    random_ids = torch.randint(3, student.config.vocab_size, (2, 5 * WINDOW), generator=torch.Generator().manual_seed(1))
    assert stream.shape[1] > 4 * WINDOW
    out = tmp_path / "fresh.pt"
    torch.save({"stream": stream, "random": random_ids}, str(out) + ".in.pt")
    subprocess.run([sys.executable, "-I", "-c", FRESH_PROCESS, str(folder), str(out)], check=True, cwd=tmp_path)
    fresh = torch.load(out)

    assert fresh["our_modules"] == [] and fresh["class"] == "MistralForCausalLM"
    with torch.no_grad():
        torch.testing.assert_close(fresh["logits"]["random"], student(random_ids, use_cache=False).logits,
                                   atol=1e-5, rtol=1e-4)
    # Greedy EMR reading in the fresh process writes the same stream: every token our reader's model chose is the
    # argmax of the fresh model's logits at the position before it.
    written = torch.tensor(result.written_by_model)
    predicted = fresh["logits"]["stream"][0].argmax(-1)
    assert written[1:].sum() > 2 * len(chunks)
    assert torch.equal(predicted[:-1][written[1:]], stream[0, 1:][written[1:]])


def test_an_export_of_the_former_custom_class_upgrades_in_place(tiny_llama_dir, tmp_path):
    student = convert_to_sliding_window(tiny_llama_dir, window=WINDOW)
    student.save_pretrained(tmp_path)
    # What the custom SlidingWindowConfig wrote; the weights kept Llama's names, so they are what they were.
    config = student.config
    legacy = {
        "model_type": "smooth_reading_swa", "architectures": ["SlidingWindowForCausalLM"], "window": WINDOW,
        "attention_bias": False, "attention_out_bias": False, "mlp_bias": False, "dtype": "float32",
        **{k: getattr(config, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
                                           "rope_parameters", "tie_word_embeddings", "max_position_embeddings")},
    }
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    with pytest.raises(ValueError, match="smooth_reading_swa"):  # a folder that needs nothing is left alone
        upgrade_legacy_export(tiny_llama_dir)

    assert cli_main(["upgrade-student", str(tmp_path)]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "MistralForCausalLM" and loaded.config.sliding_window == WINDOW
    ids = torch.randint(3, config.vocab_size, (1, 3 * WINDOW), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, student(ids).logits)
