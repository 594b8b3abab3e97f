"""The replica balancer's choices, on a clock the test moves by hand."""

from __future__ import annotations

import asyncio

import pytest

from flashevolve_nb.llm.balancer import Balancer, Replica


class Hands:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(n: int = 3, cap: int = 4, **kw: float) -> tuple[Balancer[str], list[Replica[str]], Hands]:
    clock = Hands()
    replicas = [Replica(f"r{i}", f"client{i}", cap) for i in range(n)]
    return Balancer(replicas, time_source=clock, **kw), replicas, clock


@pytest.mark.asyncio
async def test_least_outstanding_requests_wins_and_ties_rotate() -> None:
    b, (r0, r1, r2), _ = make()
    first = [await b.acquire() for _ in range(3)]
    assert sorted(r.endpoint for r in first) == ["r0", "r1", "r2"]
    b.release(r1, ok=True)
    assert await b.acquire() is r1  # the only one with nothing in flight
    assert [r.in_flight for r in (r0, r1, r2)] == [1, 1, 1]


@pytest.mark.asyncio
async def test_a_failed_replica_rests_with_doubling_cooldown_then_returns() -> None:
    b, (r0, r1), clock = make(n=2, cooldown=1.0)
    got = await b.acquire(avoid=r1)
    assert got is r0
    b.release(r0, ok=False)
    assert [s.healthy for s in b.stats()] == [False, True]
    assert [await b.acquire() for _ in range(3)] == [r1, r1, r1]
    clock.now = 1.01
    # Rested long enough: r0 (nothing in flight) is preferred again.
    r = await b.acquire()
    assert r is r0
    b.release(r0, ok=False)  # second failure in a row: two seconds this time
    assert b.stats()[0].resting_for == pytest.approx(2.0)
    clock.now = 3.1
    r = await b.acquire()
    assert r is r0
    b.release(r0, ok=True)
    assert b.stats()[0].healthy and r0.consecutive_failures == 0


@pytest.mark.asyncio
async def test_retry_goes_elsewhere_unless_nothing_else_can_serve() -> None:
    b, (r0, r1), _ = make(n=2, cap=1)
    assert await b.acquire(avoid=r0) is r1
    b.release(r1, ok=None)
    # r1 is full now, so the avoided r0 serves rather than nobody.
    await b.acquire(avoid=r0)
    assert await b.acquire(avoid=r0) is r0


@pytest.mark.asyncio
async def test_when_all_rest_the_first_to_recover_is_probed() -> None:
    b, (r0, r1, r2), _ = make(cooldown=10.0)
    for r, rest in ((r0, 5.0), (r1, 1.0), (r2, 9.0)):
        r.in_flight += 1
        b.release(r, ok=None, rest=rest)
    assert await b.acquire() is r1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_waiters_get_freed_slots_in_order_and_cancelled_ones_pass_them_on() -> None:
    b, (r0,), _ = make(n=1, cap=1)
    held = await b.acquire()
    first = asyncio.create_task(b.acquire())
    second = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert not first.done() and not second.done()
    b.release(held, ok=True)
    first.cancel()  # woken, but cancelled before it could take the slot
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1.0) is r0
    assert r0.in_flight == 1
