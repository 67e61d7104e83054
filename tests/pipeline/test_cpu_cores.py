"""vLLM's worker gets every core of a small machine; larger machines and a user's own setting are left alone."""

from __future__ import annotations

import os

import pytest

from pipeline import cpu_cores


@pytest.mark.parametrize(("cores", "expected"), [(2, "0"), (4, "0"), (16, None)])
def test_no_core_is_reserved_on_a_small_machine(monkeypatch, cores, expected):
    monkeypatch.setenv(cpu_cores.VARIABLE, "")  # recorded, so the variable is put back as it was after the test
    monkeypatch.delenv(cpu_cores.VARIABLE)
    monkeypatch.setattr(cpu_cores.os, "sched_getaffinity", lambda pid: set(range(cores)))
    cpu_cores.share_reserved_core()
    assert os.environ.get(cpu_cores.VARIABLE) == expected


def test_a_value_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv(cpu_cores.VARIABLE, "1")
    monkeypatch.setattr(cpu_cores.os, "sched_getaffinity", lambda pid: {0, 1})
    cpu_cores.share_reserved_core()
    assert os.environ[cpu_cores.VARIABLE] == "1"
