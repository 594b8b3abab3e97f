"""The circuit breaker: a failing backend opens it, a probe after the cool-down closes it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import (
    Admitted,
    BreakerClosed,
    BreakerHalfOpen,
    BreakerOpened,
    Event,
)
from flashevolve_nb.llm.breaker import BreakerSnapshot, CircuitBreaker, CircuitOpen
from flashevolve_nb.llm.openai_backend import BackendError, OpenAIBackend
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message
from flashevolve_nb.llm.retry import RetryPolicy
from flashevolve_nb.sim import Simulator
from flashevolve_nb.sim.faults import FaultRates
from flashevolve_nb.sim.http_server import SimHTTPServer

ASK = [{"role": "user", "content": "Name three primary colours. End with 'DONE'."}]


def http_backend(server: SimHTTPServer) -> OpenAIBackend:
    # No retries of its own: each call is one request, so the counts below are exact.
    return OpenAIBackend(
        model="sim-rulebook-1",
        base_url=server.base_url,
        retry=RetryPolicy(max_retries=0),
        timeout=2.0,
        cooldown=0.01,
    )


@pytest.mark.asyncio
async def test_a_failing_server_opens_the_breaker_and_a_probe_closes_it(
    sim_server: SimHTTPServer,
) -> None:
    sim_server.faults.set_rates(FaultRates(server_error=1.0))
    breaker = CircuitBreaker(http_backend(sim_server), failures=3, cooldown=0.3, name="sim")
    assert isinstance(breaker, LLM)
    heard: list[tuple[str, BreakerSnapshot]] = []
    breaker.bind(Clock(), lambda change, snap: heard.append((change, snap)))

    for _ in range(3):
        with pytest.raises(BackendError, match="HTTP 500"):
            await breaker.chat(ASK)
    assert breaker.state == "open"
    assert [c for c, _ in heard] == ["opened"]
    assert heard[0][1].consecutive_failures == 3 and "HTTP 500" in heard[0][1].last_error
    sent = sim_server.counters().requests
    assert sent == 3

    # Open: a call is held back, not sent; after the cool-down it is the probe.
    held = asyncio.create_task(breaker.chat(ASK))
    await asyncio.sleep(0.05)
    assert breaker.snapshot().waiting == 1 and sim_server.counters().requests == sent
    with pytest.raises(BackendError):  # still down: the probe fails, the breaker reopens
        await held
    assert [c for c, _ in heard] == ["opened", "half_open", "reopened"]
    assert sim_server.counters().requests == sent + 1

    sim_server.faults.set_rates(FaultRates())  # the server is back
    answer = await breaker.chat(ASK)
    assert answer.text
    assert [c for c, _ in heard][-2:] == ["half_open", "closed"]
    snap = breaker.snapshot()
    assert (snap.state, snap.consecutive_failures, snap.opened) == ("closed", 0, 2)
    assert snap.last_downtime > 0
    await asyncio.gather(*(breaker.chat(ASK) for _ in range(5)))  # flows again
    assert sim_server.counters().requests == sent + 2 + 5


@pytest.mark.asyncio
async def test_fail_fast_refuses_calls_while_open(sim_server: SimHTTPServer) -> None:
    sim_server.faults.set_rates(FaultRates(server_error=1.0))
    breaker = CircuitBreaker(http_backend(sim_server), failures=2, cooldown=60, fail_fast=True)
    for _ in range(2):
        with pytest.raises(BackendError):
            await breaker.chat(ASK)
    with pytest.raises(CircuitOpen, match="circuit open after 2 consecutive failures") as err:
        await breaker.chat(ASK)
    assert isinstance(err.value, LLMError)  # workloads treat it as any failed call
    assert sim_server.counters().requests == 2


def test_a_breaker_needs_sensible_settings() -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="failures must be an int >= 1"):
        CircuitBreaker(sim.llm(), failures=0)
    with pytest.raises(ValueError, match="cooldown must be > 0"):
        CircuitBreaker(sim.llm(), cooldown=0)


class Outage:
    """A backend that is down between two times of the run clock (its server crashed)."""

    def __init__(self, llm: LLM, clock: Clock, start: float, end: float) -> None:
        self.llm, self.clock, self.start, self.end = llm, clock, start, end
        self.refused = 0

    @property
    def name(self) -> str:
        return self.llm.name

    @property
    def simulated(self) -> bool:
        return True

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        if self.start <= self.clock.now() < self.end:
            self.refused += 1
            await self.clock.sleep(1.0)  # the client's connect attempt times out
            raise LLMError("connection timed out: the server is down")
        return await self.llm.chat(messages, **params)


async def run_with_outage(breaker: bool) -> tuple[list[Event], list[Outage], list[object]]:
    clock = Clock(120.0)
    sim = Simulator("vllm", seed=0, clock=clock)
    down = [Outage(sim.llm(role), clock, 120.0, 420.0) for role in ("task", "reflection")]
    config = DemoConfig(
        minutes=12, n_val=12, breaker_failures=4 if breaker else None, breaker_cooldown=30.0
    )
    demo = build_demo(config, clock=clock, llms={"task": down[0], "reflection": down[1]})
    events: list[Event] = []
    snapshots: list[object] = []

    def watch(e: Event) -> None:
        events.append(e)
        if isinstance(e, BreakerOpened):
            snapshots.append(demo.pipeline.snapshot().breakers)

    demo.pipeline.bus.subscribe(watch)
    result = await demo.run()
    assert result.finish_reason == "max_sim_seconds=720 reached"
    return events, down, snapshots


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_an_outage_opens_breakers_in_events_and_snapshots_and_the_run_recovers() -> None:
    events, down, snapshots = await run_with_outage(breaker=True)
    opened = [e for e in events if isinstance(e, BreakerOpened)]
    closed = [e for e in events if isinstance(e, BreakerClosed)]
    assert opened and all(120.0 <= e.t < 420.0 + 30.0 for e in opened)
    assert any(e.reopened for e in opened)  # probes during the outage failed
    assert any(isinstance(e, BreakerHalfOpen) for e in events)
    assert {e.breaker for e in closed} == {e.breaker for e in opened}
    assert all(e.t >= 420.0 and e.downtime >= 30.0 for e in closed)
    # While open, the pipeline's snapshot says so.
    assert any(s.state == "open" for group in snapshots for s in group)  # type: ignore[attr-defined]
    # The run went on after the outage.
    assert any(isinstance(e, Admitted) and e.t > 420.0 for e in events)

    _, unprotected, _ = await run_with_outage(breaker=False)
    with_breaker = sum(o.refused for o in down)
    without = sum(o.refused for o in unprotected)
    print(f"calls sent to the downed server: {with_breaker} with breakers, {without} without")
    assert with_breaker * 5 < without
