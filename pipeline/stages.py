"""Stages with one interface, as datatrove's pipeline steps: a stage takes an iterable of items and yields items,
and a chain of stages counts, per stage, what went in, what came out, the reject records it made and the seconds
it spent itself (not waiting on the stages before it).

    stats = StageStats.chain(["read", "validate"])
    for item in run_stages(source, [read, partial(validate, seen=set())], stats):
        ...
    json.dumps([s.to_dict() for s in stats])

Items are documents, plans, trajectories or reject records; a stage hands on what it does not handle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.rejects import Reject

Stage = Callable[[Iterable[Any]], Iterator[Any]]


@dataclass
class StageStats:
    name: str
    items_in: int = 0
    items_out: int = 0
    rejects_made: int = 0  # reject records this stage wrote (not the ones it handed on)
    seconds: float = 0.0  # in the stage itself

    @staticmethod
    def chain(names: list[str]) -> list["StageStats"]:
        return [StageStats(name) for name in names]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def run_stages(items: Iterable[Any], stages: list[Stage], stats: list[StageStats]) -> Iterator[Any]:
    """Chain `stages` over `items`, counting into `stats` (one per stage, in order)."""
    if len(stages) != len(stats):
        raise ValueError(f"{len(stages)} stages but {len(stats)} statistics; give one StageStats per stage")
    for stage, stat in zip(stages, stats):
        items = _counted(stage, items, stat)
    return items


class _Upstream:
    """The items a stage reads, counted, with the time spent waiting for them (the earlier stages' time)."""

    def __init__(self, items: Iterable[Any], stat: StageStats):
        self.items, self.stat = iter(items), stat
        self.waited = 0.0
        self.rejects = 0

    def __iter__(self) -> "_Upstream":
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            item = next(self.items)
        finally:
            self.waited += time.perf_counter() - start
        self.stat.items_in += 1
        self.rejects += isinstance(item, Reject)
        return item


def _counted(stage: Stage, items: Iterable[Any], stat: StageStats) -> Iterator[Any]:
    upstream = _Upstream(items, stat)
    outputs = iter(stage(upstream))
    rejects_out = 0
    while True:
        start, waited = time.perf_counter(), upstream.waited
        try:
            item = next(outputs)
        except StopIteration:
            return
        finally:
            stat.seconds += time.perf_counter() - start - (upstream.waited - waited)
        stat.items_out += 1
        rejects_out += isinstance(item, Reject)
        stat.rejects_made = rejects_out - upstream.rejects
        yield item
