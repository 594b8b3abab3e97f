"""GEPA's asynchronous evolution through OpenAIBackend, over HTTP, with faults injected."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    LLMCallFinished,
    LLMCallStarted,
    LLMRetry,
)
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.retry import RetryPolicy
from flashevolve_nb.sim.faults import FaultRates
from flashevolve_nb.sim.http_server import SimHTTPServer

SCALE = 600.0
FAULT_TO_RETRY = {
    "rate_limit": "429",
    "server_error": "500",
    "hang": "timeout",
    "malformed": "malformed answer",
    "drop": "connection error",
}


def cause_kind(e: LLMRetry) -> str:
    if e.status is not None:
        return str(e.status)
    return e.cause.split(":")[0].split(" (")[0]


@pytest.mark.asyncio
async def test_async_gepa_run_survives_every_fault_and_loses_nothing(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    rates = FaultRates(
        rate_limit=0.03, server_error=0.03, hang=0.005, malformed=0.02, drop=0.02,
        retry_after=0.02, seed=3,
    )  # fmt: skip
    server = sim_server_factory(seed=0, time_scale=SCALE, faults=rates)
    # One of each first, so every kind is met whatever the random draws are.
    server.faults.inject("429", "500", "hang", "malformed", "drop")
    clock = Clock(SCALE)
    llm = OpenAIBackend(
        model="sim-rulebook-1",
        base_url=server.base_url,
        clock=clock,
        timeout=1.0,
        retry=RetryPolicy(max_retries=8, backoff=0.01, max_backoff=0.1),
        cooldown=0.02,
        seed=0,
    )
    config = DemoConfig(
        mode="async", seed=0, minutes=60, time_scale=SCALE, n_train=20, n_val=10, n_test=10,
        max_metric_calls=250, workers=4, depth=8,
    )  # fmt: skip
    demo = build_demo(config, clock=clock, llms=llm)
    result = await demo.run()
    await llm.aclose()
    events = result.events

    assert "max_metric_calls" in result.finish_reason or "max_sim_seconds" in result.finish_reason
    s = result.stats
    assert s.proposals > 0 and s.validations > 0

    # Retries are events, tied to the calls they belong to, for every kind of fault.
    retries = [e for e in events if isinstance(e, LLMRetry)]
    kinds = Counter(cause_kind(e) for e in retries)
    assert {"429", "500", "timeout", "malformed answer", "connection error"} <= set(kinds)
    started = {e.call_id: e for e in events if isinstance(e, LLMCallStarted)}
    finished = {e.call_id: e for e in events if isinstance(e, LLMCallFinished)}
    for r in retries:
        assert r.call_id in started and r.role == started[r.call_id].role
        assert r.backend == llm.name and r.endpoint == server.base_url
    # Every call got its answer in the end (or was cut by the end of the run): none
    # failed, so no step failed and no example was scored 0 for a server fault.
    assert [e for e in events if isinstance(e, ItemFailed)] == []
    assert len(finished) == len(started)
    cut = [e for e in finished.values() if e.finish_reason == "cancelled"]
    assert all(e.ok for e in finished.values() if e not in cut)
    assert llm.stats().failed_calls == 0 and llm.stats().calls == len(finished) - len(cut)
    # Each fault was retried, but for faults met by calls the end of the run cut short.
    # (A timeout may also come from a slow answer on a busy machine: at least the hangs.)
    injected = server.faults.injected()
    for fault, kind in FAULT_TO_RETRY.items():
        missing = injected.get(fault, 0) - kinds[kind]
        assert missing <= len(cut) and (kind == "timeout" or missing >= 0), (fault, kinds)

    # No admitted artifact is lost: every admission is in the pool, versions unbroken.
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert [e.artifact_id for e in admitted] == [x.artifact.id for x in result.pool.entries]
    assert [e.version for e in admitted] == list(range(1, len(admitted) + 1))

    # Tokens were counted from the server's usage, and latencies are on the run clock.
    assert s.tokens == llm.stats().prompt_tokens + llm.stats().completion_tokens > 0
    assert max(e.latency for e in finished.values()) > 1.0  # simulated seconds, not real


@pytest.mark.asyncio
async def test_exhausted_retries_fail_the_step_with_the_backend_and_cause(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    server = sim_server_factory(seed=0, time_scale=SCALE)
    clock = Clock(SCALE)
    task = OpenAIBackend(model="sim-rulebook-1", base_url=server.base_url, clock=clock)
    # The reflection model's server always fails: proposals cannot be made.
    broken = sim_server_factory(seed=0, time_scale=SCALE, faults=FaultRates(server_error=1.0))
    reflection = OpenAIBackend(
        model="sim-rulebook-1", base_url=broken.base_url, name="reflector", clock=clock,
        retry=RetryPolicy(max_retries=1, backoff=0.01),
    )  # fmt: skip
    config = DemoConfig(
        mode="async", seed=0, minutes=60, time_scale=SCALE, n_train=20, n_val=10, n_test=10,
        max_metric_calls=60, workers=2, depth=4,
    )  # fmt: skip
    demo = build_demo(config, clock=clock, llms={"task": task, "reflection": reflection})
    result = await demo.run()
    failed = [e for e in result.events if isinstance(e, ItemFailed)]
    assert failed and all(e.stage == "propose" for e in failed)
    assert all(
        "BackendError: reflector at " + broken.base_url + ": HTTP 500" in e.error for e in failed
    )
    assert all("gave up after 2 attempt(s)" in e.error for e in failed)
    # The run itself went on to its budget; only the seed is in the pool.
    assert "max_metric_calls" in result.finish_reason or "max_sim_seconds" in result.finish_reason
    assert len(result.pool.entries) == 1
