"""Timing models on a virtual loop clock: continuous batching and a hosted API."""

from __future__ import annotations

import asyncio
import random

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.sim import ApiProfile, RateLimited, VllmProfile, get_profile
from flashevolve_nb.sim.batching import BatchingServer
from flashevolve_nb.sim.hosted import HostedServer

T0, T1 = 0.012, 0.00012


def vllm(**overrides: float) -> BatchingServer:
    profile = get_profile("vllm", prefill_per_token=0.0, **overrides)
    assert isinstance(profile, VllmProfile)
    return BatchingServer(profile, Clock())


def test_profiles_by_name_with_overrides() -> None:
    p = get_profile("vllm", max_running=64)
    assert isinstance(p, VllmProfile) and p.max_running == 64 and p.t0 == T0
    assert p.capacity_tokens_per_s == pytest.approx(64 / (T0 + T1 * 64))
    assert 3000 < get_profile("vllm").capacity_tokens_per_s < 6000
    assert isinstance(get_profile("api", rpm_limit=10), ApiProfile)
    with pytest.raises(ValueError, match="valid names: vllm, api"):
        get_profile("tgi")
    with pytest.raises(ValueError, match="valid fields: t0, t1"):
        get_profile("vllm", t2=1.0)
    with pytest.raises(ValueError, match="max_running"):
        get_profile("vllm", max_running=0)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_one_stream_takes_n_steps() -> None:
    server = vllm()
    latency = await server.generate(0, 1000)
    assert latency == pytest.approx(1000 * (T0 + T1), abs=1e-3)
    assert server.clock.now() == pytest.approx(latency, abs=1e-3)
    stats = server.stats()
    assert stats.requests_served == 1 and stats.tokens_generated == 1000
    assert stats.running == 0 and not server.timer_pending


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_concurrent_streams_slow_each_other_down() -> None:
    server = vllm()
    n = 16
    latencies = await asyncio.gather(*(server.generate(0, 500) for _ in range(n)))
    for latency in latencies:
        assert latency == pytest.approx(500 * (T0 + T1 * n), abs=1e-3)
    assert server.stats().mean_running == pytest.approx(n, rel=1e-3)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_a_late_joiner_shares_the_batch() -> None:
    server = vllm()
    first = asyncio.create_task(server.generate(0, 1000))
    await asyncio.sleep(5.0)
    second = asyncio.create_task(server.generate(0, 1000))
    done_alone = 5.0 / (T0 + T1)
    first_latency = 5.0 + (1000 - done_alone) * (T0 + 2 * T1)
    assert await first == pytest.approx(first_latency, abs=1e-3)
    second_latency = first_latency - 5.0 + done_alone * (T0 + T1)
    assert await second == pytest.approx(second_latency, abs=1e-3)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_prefill_is_extra_work_for_the_joining_request() -> None:
    profile = get_profile("vllm", prefill_per_token=0.01)
    assert isinstance(profile, VllmProfile)
    server = BatchingServer(profile, Clock())
    latency = await server.generate(2000, 100)
    assert latency == pytest.approx((100 + 20) * (T0 + T1), abs=1e-3)
    assert server.tokens_generated == 100


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_requests_beyond_the_cap_wait_in_line() -> None:
    server = vllm(max_running=2)
    tasks = [asyncio.create_task(server.generate(0, 100)) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert (server.running, server.waiting) == (2, 1)
    latencies = await asyncio.gather(*tasks)
    pair = 100 * (T0 + 2 * T1)
    assert latencies[0] == pytest.approx(pair, abs=1e-3)
    assert latencies[2] == pytest.approx(pair + 100 * (T0 + T1), abs=1e-3)
    assert server.stats().mean_in_flight > server.stats().mean_running


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_cancellation_leaves_the_batch_and_the_line() -> None:
    server = vllm(max_running=2)
    a = asyncio.create_task(server.generate(0, 1000))
    b = asyncio.create_task(server.generate(0, 1000))
    c = asyncio.create_task(server.generate(0, 1000))
    await asyncio.sleep(1.0)
    c.cancel()
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    with pytest.raises(asyncio.CancelledError):
        await c
    assert (server.running, server.waiting) == (1, 0)
    shared = 1.0 / (T0 + 2 * T1)
    assert await b == pytest.approx(1.0 + (1000 - shared) * (T0 + T1), abs=1e-3)
    stats = server.stats()
    assert (stats.requests_served, stats.requests_cancelled) == (1, 2)
    assert (server.running, server.waiting, server.timer_pending) == (0, 0, False)


@pytest.mark.asyncio
async def test_batching_runs_on_a_real_loop_with_time_scale() -> None:
    profile = get_profile("vllm")
    assert isinstance(profile, VllmProfile)
    server = BatchingServer(profile, Clock(time_scale=100.0))
    latencies = await asyncio.gather(*(server.generate(100, 400) for _ in range(4)))
    expected = (400 + 1) * (T0 + 4 * T1)
    assert all(lat == pytest.approx(expected, rel=0.2) for lat in latencies), latencies
    assert not server.timer_pending


def api(**overrides: float | None) -> HostedServer:
    profile = get_profile("api", ttft_sigma=0.0, speed_jitter=0.0, **overrides)
    assert isinstance(profile, ApiProfile)
    return HostedServer(profile, Clock())


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_api_latency_does_not_depend_on_load() -> None:
    server = api()
    latencies = await asyncio.gather(*(server.generate(10, 800) for _ in range(50)))
    assert all(lat == pytest.approx(0.5 + 800 / 80, abs=1e-3) for lat in latencies)
    assert server.stats().tokens_generated == 50 * 800


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_api_concurrency_cap_queues_and_cancellation_frees_slots() -> None:
    server = api(max_concurrency=1)
    first = asyncio.create_task(server.generate(0, 80))
    second = asyncio.create_task(server.generate(0, 80))
    third = asyncio.create_task(server.generate(0, 80))
    await asyncio.sleep(0.1)
    assert (server.running, server.waiting) == (1, 2)
    second.cancel()
    assert await first == pytest.approx(1.5, abs=1e-3)
    assert await third == pytest.approx(3.0, abs=1e-3)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (server.running, server.waiting) == (0, 0)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_api_rate_limits_answer_429() -> None:
    server = api(rpm_limit=2)
    await server.generate(0, 10)
    await server.generate(0, 10)
    with pytest.raises(RateLimited) as caught:
        await server.generate(0, 10)
    assert 0 < caught.value.retry_after <= 60
    await asyncio.sleep(caught.value.retry_after + 0.01)
    await server.generate(0, 10)
    tpm = api(tpm_limit=1000)
    await tpm.generate(100, 800)
    with pytest.raises(RateLimited, match="tokens per minute"):
        await tpm.generate(100, 800)
    assert tpm.stats().requests_rejected == 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_api_ttft_is_heavy_tailed() -> None:
    profile = get_profile("api")
    assert isinstance(profile, ApiProfile)
    server = HostedServer(profile, Clock())
    rng = random.Random(0)
    ttfts = sorted(server.service_time(0, rng) for _ in range(2000))
    assert 0.4 < ttfts[1000] < 0.6
    assert ttfts[1980] > 3 * ttfts[1000]
