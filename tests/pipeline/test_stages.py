"""Stages with one interface: items in, items out, statistics per stage."""

from __future__ import annotations

import time

import pytest

from pipeline.rejects import Reject
from pipeline.stages import StageStats, run_stages


def reject_odd(items):
    for n in items:
        if isinstance(n, int) and n % 2:
            yield Reject(document_id=str(n), field="n", reason="odd", fix="none")
        else:
            yield n


def slow_double(items):
    for n in items:
        if isinstance(n, int):
            time.sleep(0.02)
            yield 2 * n
        else:
            yield n  # rejects of earlier stages are handed on


def test_each_stage_counts_what_went_in_and_out_and_the_rejects_it_made():
    stats = StageStats.chain(["reject odd", "double"])
    out = list(run_stages(range(6), [reject_odd, slow_double], stats))
    assert [x for x in out if isinstance(x, int)] == [0, 4, 8]
    assert [s.to_dict()["items_in"] for s in stats] == [6, 6] and [s.items_out for s in stats] == [6, 6]
    assert [s.rejects_made for s in stats] == [3, 0]  # the second stage only handed the rejects on
    # Seconds are each stage's own: the sleeping stage has them, the one before it does not.
    assert stats[1].seconds >= 0.05 and stats[0].seconds < 0.05


def test_stages_and_statistics_must_pair_up():
    with pytest.raises(ValueError, match="2 stages but 1 statistics"):
        run_stages([], [reject_odd, slow_double], StageStats.chain(["one"]))
