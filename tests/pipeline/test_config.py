"""The typed config system every job uses: errors that name the setting, one comparison, one content hash."""

from __future__ import annotations

import pytest
from pydantic import Field

from pipeline.config import Config, differences


class Source(Config):
    kind: str
    n: int = 8


class Run(Config):
    sources: list[Source]
    seed: int = 0


class RunWithANewSetting(Config):
    """Run, one version later: a setting was added with a default."""

    sources: list[Source]
    seed: int = 0
    shuffle: bool = False
    extra: list[int] = Field(default_factory=list)


def test_errors_name_the_setting_by_its_path_and_say_the_fix():
    with pytest.raises(ValueError, match=r"^run.sources\[1\]: unknown setting\(s\) \['m'\]. Fix: use only \['kind', 'n'\]$"):
        Run.from_values({"sources": [{"kind": "a"}, {"kind": "b", "m": 1}]}, "run")
    with pytest.raises(ValueError, match=r"^run.sources\[0\]: setting\(s\) \['kind'\] are required. Fix: add them$"):
        Run.from_values({"sources": [{"n": 2}]}, "run")
    with pytest.raises(ValueError, match=r"^run.seed: Input should be a valid integer"):
        Run.from_values({"sources": [], "seed": "one"}, "run")
    with pytest.raises(ValueError, match="^run: expected a mapping, got list$"):
        Run.from_values([1], "run")


def test_the_content_hash_survives_a_new_setting_with_a_default_and_sees_any_change():
    values = {"sources": [{"kind": "niah", "n": 3}], "seed": 2}
    old, new = Run.from_values(values), RunWithANewSetting.from_values(values)
    assert old.content_hash() == new.content_hash()
    # A default written out is the same content as a default left out.
    assert Run.from_values({"sources": [{"kind": "niah", "n": 8}], "seed": 0}).content_hash() == Run.from_values(
        {"sources": [{"kind": "niah"}]}).content_hash()
    assert RunWithANewSetting.from_values({**values, "shuffle": True}).content_hash() != new.content_hash()
    assert Run.from_values({**values, "seed": 3}).content_hash() != old.content_hash()
    assert old.content_hash(exclude={"seed"}) == Run.from_values({**values, "seed": 3}).content_hash(exclude={"seed"})


def test_differences_name_each_changed_setting_with_both_values():
    saved = Run.from_values({"sources": [{"kind": "niah"}], "seed": 0})
    now = Run.from_values({"sources": [{"kind": "niah", "n": 2}], "seed": 1})
    assert differences(saved, now) == ["seed: saved 0, now 1", "sources: saved [{'kind': 'niah', 'n': 8}], now "
                                       "[{'kind': 'niah', 'n': 2}]"]
    assert differences(saved, now, ignore={"seed", "sources"}) == []
    assert differences(saved, saved.model_copy(deep=True)) == []
