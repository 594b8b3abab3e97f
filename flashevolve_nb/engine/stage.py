"""Stages: named async steps of an evolution with live-changeable workers.

A stage is an async function from one work item to zero or more items. It
does not own its queue (the pipeline does), so the same workload stages run
under the asynchronous pipeline and under the lock-step synchronous schedule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.queue import StageQueue

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["Stage", "StageFn", "StageSnapshot", "StageSpec"]

StageFn = Callable[[WorkItem, "StageContext"], Awaitable[Sequence[WorkItem]]]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """What a workload declares about one stage."""

    name: str
    fn: StageFn
    workers: int = 8
    consumes: frozenset[str] = field(default_factory=frozenset)
    """Count budgets the stage spends (``metric_calls``, ``proposals``): when one is
    exhausted, items still waiting for this stage are dropped instead of run."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    name: str
    queued: int
    busy: int
    workers: int
    paused: bool
    processed: int
    failed: int
    dropped: int
    queued_ids: tuple[str, ...]


class Stage:
    """Runtime state of one stage: its queue, worker target and counters.

    Owned and mutated by the pipeline, on the pipeline's loop only.
    """

    def __init__(self, spec: StageSpec, workers: int) -> None:
        if workers < 0:
            raise ValueError(f"stage {spec.name!r}: workers must be >= 0 (got {workers})")
        self.spec = spec
        self.name = spec.name
        self.target_workers = workers
        self.busy = 0
        self.processed = 0
        self.failed = 0
        self.dropped = 0
        self.queue = StageQueue()

    @property
    def paused(self) -> bool:
        return self.queue.paused

    def snapshot(self) -> StageSnapshot:
        return StageSnapshot(
            name=self.name,
            queued=len(self.queue),
            busy=self.busy,
            workers=self.target_workers,
            paused=self.paused,
            processed=self.processed,
            failed=self.failed,
            dropped=self.dropped,
            queued_ids=tuple(i.id for i in self.queue.items()),
        )
