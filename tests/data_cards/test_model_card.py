"""Model cards: metadata the Hub reads, the reading rule, the training run's own card kept, evaluation rows."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard

from data_cards import model_card
from data_cards.cards import count_parameters


def test_model_card_metadata_and_reading_rule(exported_student):
    card = model_card(exported_student, load_path="someone/tiny-swa", dataset_id="someone/niah-corpus")
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert "smooth-reading" in card.data.tags and "smooth-reading-swa" in card.data.tags  # the export's tag kept
    assert card.data.datasets == ["someone/niah-corpus"]
    window = json.loads((exported_student / "config.json").read_text())["sliding_window"]
    assert f"| window | {window} tokens (chunks of at most {window // 2}) |" in card.text
    assert 'from_pretrained("someone/tiny-swa")' in card.text
    # A stock architecture: the card tells users it loads without our package (no `import students` line).
    assert "`MistralForCausalLM` with a sliding window" in card.text and "import students" not in card.text
    # The train job's card (its loss table, its config) is carried whole, one heading level down.
    assert "## Training run" in card.text and "### Loss" in card.text and "| 3 | 3.5000 |" in card.text


def test_parameter_count_read_from_safetensors_headers(exported_student):
    from safetensors.torch import load_file

    tensors = load_file(exported_student / "model.safetensors")
    assert count_parameters(exported_student) == sum(t.numel() for t in tensors.values())


def test_evaluation_rows_appear_and_card_round_trips(exported_student, tmp_path):
    rows = [{"task": "niah", "mode": "emr", "length": 1024, "window": 64, "score": 97.5, "n": 40}]
    card = model_card(exported_student, load_path="x/y", evaluation=rows)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert "| niah | emr | 1024 | 64 | 97.5 | 40 |" in loaded.text
    assert loaded.data.model_name == "y"
