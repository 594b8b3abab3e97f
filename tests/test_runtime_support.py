"""Helpers shared by the runtime and dashboard tests (no tests here).

These tests drive real background threads on the real clock, since that is
what a notebook does. Nothing asserts on elapsed time: ``until`` waits for a
condition, and its time limit only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb.engine import Artifact, Pool, StageContext, WorkItem
from flashevolve_nb.engine.events import Event, StepFinished, StepStarted
from flashevolve_nb.runtime import Run

FAST = {"a": 0.004, "b": 0.006, "c": 0.008}
"""Real seconds per toy stage: a run moves quickly without burning the CPU."""


def until(pred: Callable[[], object], what: str, limit: float = 30.0) -> None:
    """Wait for ``pred()`` to hold; fail (never pass) when it does not within ``limit`` s."""
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def kinds(run: Run, kind: type[Event]) -> list[Any]:
    return [e for e in run.events_since(0).events if isinstance(e, kind)]


def live_before_each_start(events: Sequence[Event]) -> list[tuple[int, int]]:
    """(index, steps in flight just before) for every StepStarted."""
    live = 0
    seen = []
    for i, e in enumerate(events):
        if isinstance(e, StepStarted):
            seen.append((i, live))
            live += 1
        elif isinstance(e, StepFinished):
            live -= 1
    return seen


@dataclass
class HumanToy(ToyWorkload):
    """The toy workload, taking human proposals: a person's artifact skips the toy's
    own proposal in the first stage and scores 1.0 on admission."""

    def begin_human_step(
        self,
        step: int,
        item_id: str,
        artifact: Artifact,
        pool: Pool,
        rng: Any,
        now: float,
    ) -> WorkItem:
        return WorkItem(item_id, step, pool.version, artifact, payload="human", created_at=now)

    def with_human_artifact(self, item: WorkItem, artifact: Artifact) -> WorkItem:
        return item.evolve(artifact=artifact, payload="human")

    def _make(self, stage: str):  # type: ignore[no-untyped-def]
        inner = super()._make(stage)
        first = next(iter(self.durations))

        async def fn(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            if item.payload == "human" and stage == first:
                await asyncio.sleep(self.durations[stage])
                return [item]
            return await inner(item, ctx)  # type: ignore[no-any-return]

        return fn

    def admission(self, item: WorkItem) -> Sequence[float]:
        if item.payload == "human":
            return [1.0] * self.n_instances
        return super().admission(item)


@pytest.fixture(name="runs")
def runs_fixture() -> Iterator[list[Run]]:
    """Runs a test starts; each is cancelled and waited for at the end."""
    started: list[Run] = []
    yield started
    for run in started:
        run.stop("cancel")
    for run in started:
        with contextlib.suppress(Exception):  # a failed run is some test's subject
            run.wait(timeout=30)
