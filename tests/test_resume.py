"""Resuming a stored run in a new pipeline: pool, counters, budgets and clock carry on."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy import ToyWorkload

from flashevolve_nb import open_run
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig
from flashevolve_nb.engine.events import Admitted, RunResumed, RunStarted
from flashevolve_nb.store import attach

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def toy(budget: Budget) -> Pipeline:
    return Pipeline(ToyWorkload(), PipelineConfig(depth=3, budget=budget))


async def test_a_resumed_run_continues_the_pool_versions_ids_and_clock(tmp_path: Path) -> None:
    d = tmp_path / "run"
    first = toy(Budget(max_sim_seconds=50))
    attach(first, d)
    r1 = await first.run()

    second = toy(Budget(max_sim_seconds=100))
    store = attach(second, d, resume=True)
    assert store.session == 2 and store.resumed
    # Restored before the run starts: the pool as it was, nothing re-seeded.
    assert second.pool.snapshot() == r1.pool
    r2 = await second.run()

    started = [e for e in r2.events if isinstance(e, RunStarted)]
    assert started[0].t == 0.0 and started[1].t >= r1.stats.sim_seconds
    resumed = next(e for e in r2.events if isinstance(e, RunResumed))
    assert (resumed.session, resumed.version) == (2, r1.pool.version)
    versions = [e.version for e in r2.events if isinstance(e, Admitted)]
    assert versions == list(range(1, len(versions) + 1))  # no gap, no repeat, one seed
    ids = [e.artifact.id for e in r2.pool.entries]
    assert len(set(ids)) == len(ids)
    assert r2.stats.sim_seconds == pytest.approx(100.0)
    assert r2.stats.steps > r1.stats.steps  # the statistics cover both sessions
    with open_run(d) as stored:
        assert [s.finish_reason for s in stored.sessions] == [
            "max_sim_seconds=50 reached",
            "max_sim_seconds=100 reached",
        ]
        assert stored.events_frame().equals(r2.events_frame())


async def test_budgets_count_what_earlier_sessions_spent(tmp_path: Path) -> None:
    d = tmp_path / "run"
    first = toy(Budget(max_proposals=10))
    attach(first, d)
    r1 = await first.run()
    assert r1.finish_reason == "max_proposals=10 reached"

    again = toy(Budget(max_proposals=10))  # the same budget: nothing is left of it
    attach(again, d, resume=True)
    r2 = await again.run()
    assert r2.finish_reason == "max_proposals=10 reached"
    assert again.budget.proposals == first.budget.proposals
    assert r2.stats.steps == r1.stats.steps

    more = toy(Budget(max_proposals=20))
    attach(more, d, resume=True)
    await more.run()
    assert more.budget.proposals == 20
    assert more.budget.metric_calls > first.budget.metric_calls


async def test_a_resumed_gepa_run_moves_its_minibatches_on(tmp_path: Path) -> None:
    d = tmp_path / "run"
    first = build_demo(DemoConfig(minutes=4, n_val=10, depth=4))
    attach(first.pipeline, d)
    await first.run()
    sampler = first.workload._sampler
    where = sampler.epoch, len(sampler._order)

    second = build_demo(DemoConfig(minutes=8, n_val=10, depth=4))
    attach(second.pipeline, d, resume=True)
    # Before any new step: the sampler stands where the first process left it.
    sampler = second.workload._sampler
    assert (sampler.epoch, len(sampler._order)) == where
    r2 = await second.run()
    assert r2.finish_reason == "max_sim_seconds=480 reached"
    assert r2.stats.accepted > 0
