"""Fixtures the job tests share with the card tests: an exported student and a rule-teacher corpus.

They are defined once, in tests/data_cards/conftest.py, and loaded from there by path (the two test folders are
not packages, and `data_cards` is also the name of the package under test).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "card_fixtures", Path(__file__).resolve().parents[1] / "data_cards" / "conftest.py"
)
card_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(card_fixtures)

exported_student = card_fixtures.exported_student
rule_corpus = card_fixtures.rule_corpus
write_rule_corpus = card_fixtures.write_rule_corpus
