"""Folders that appear whole or not at all."""

from __future__ import annotations

import pytest

from pipeline.files import staged_folder


def test_a_failed_fill_leaves_the_previous_folder_and_no_staging(tmp_path):
    target = tmp_path / "export"
    with staged_folder(target) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "weights").write_text("half of v2")
        raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_staging_folder_left_by_a_killed_process_is_cleared_and_the_new_folder_replaces_the_old(tmp_path):
    target = tmp_path / "export"
    with staged_folder(target) as staging:
        (staging / "old-only").write_text("v1")
    leftover = tmp_path / ".export.staging"
    leftover.mkdir()
    (leftover / "torn").write_text("x")
    with staged_folder(target) as staging:
        (staging / "weights").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
