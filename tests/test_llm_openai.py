"""OpenAIBackend over real HTTP against the loopback simulator server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from flashevolve_nb.llm.openai_backend import BackendError, OpenAIBackend
from flashevolve_nb.llm.protocol import LLM, LLMError, RetryNotice, retry_listener
from flashevolve_nb.llm.retry import RetryPolicy
from flashevolve_nb.llm.transport import aiohttp_available
from flashevolve_nb.sim.faults import FaultRates
from flashevolve_nb.sim.http_server import SimHTTPServer

MODEL = "sim-rulebook-1"
ASK = [{"role": "user", "content": "Name three primary colours. End with 'DONE'."}]
QUICK = RetryPolicy(max_retries=5, backoff=0.01, max_backoff=0.05)


def backend(*servers: SimHTTPServer | str, **options: Any) -> OpenAIBackend:
    urls = [s if isinstance(s, str) else s.base_url for s in servers]
    options.setdefault("retry", QUICK)
    options.setdefault("timeout", 2.0)
    options.setdefault("cooldown", 0.05)
    return OpenAIBackend(model=MODEL, base_url=urls, seed=0, **options)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.asyncio
async def test_an_answer_with_usage_latency_and_the_protocol(sim_server: SimHTTPServer) -> None:
    llm = backend(sim_server)
    assert isinstance(llm, LLM) and not llm.simulated and llm.name == f"openai:{MODEL}"
    c = await llm.chat(ASK, max_tokens=300)
    # The answer came from the simulator server, so results from it must say "simulated".
    assert llm.simulated
    assert c.text and c.model == MODEL and c.finish_reason in ("stop", "length")
    assert c.usage.prompt_tokens > 0 and 0 < c.usage.completion_tokens <= 300
    assert c.latency > 0
    s = llm.stats()
    assert (s.calls, s.attempts, s.retries, s.failed_calls, s.in_flight) == (1, 1, 0, 0, 0)
    assert (s.prompt_tokens, s.completion_tokens) == (
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
    )
    assert s.cost is None
    await llm.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_every_fault_is_retried_and_reported_then_answered(
    sim_server: SimHTTPServer, transport: str
) -> None:
    # The same causes on both transports: aiohttp's reports every dropped connection as
    # a connect timeout, which must still read "connection error".
    if transport == "aiohttp" and not aiohttp_available():
        pytest.skip("the openai client's aiohttp extra is not installed")
    sim_server.faults.inject("429", "500", "hang", "malformed", "drop")
    llm = backend(sim_server, timeout=0.5, http_transport=transport)
    heard: list[RetryNotice] = []
    with retry_listener(heard.append):
        c = await llm.chat(ASK)
    assert c.text
    assert [n.attempt for n in heard] == [1, 2, 3, 4, 5]
    assert [n.status for n in heard] == [429, 500, None, None, None]
    causes = [n.cause for n in heard]
    assert causes[0].startswith("HTTP 429") and causes[1].startswith("HTTP 500")
    assert "timeout" in causes[2]
    assert "malformed answer" in causes[3]
    assert "connection error" in causes[4]
    assert all(n.backend == llm.name and n.endpoint == sim_server.base_url for n in heard)
    # Retry-After (0.05 s) is a floor under the backoff.
    assert heard[0].delay >= 0.05
    s = llm.stats()
    assert (s.calls, s.attempts, s.retries, s.failed_calls) == (1, 6, 5, 0)
    await llm.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_a_refused_connection_is_a_connection_error_not_a_timeout(transport: str) -> None:
    if transport == "aiohttp" and not aiohttp_available():
        pytest.skip("the openai client's aiohttp extra is not installed")
    llm = backend(closed_port_url(), http_transport=transport, retry=RetryPolicy(max_retries=0))
    with pytest.raises(BackendError) as err:
        await llm.chat(ASK)
    assert err.value.cause.startswith("connection error") and err.value.status is None
    await llm.aclose()


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="http_transport"):
        backend("http://127.0.0.1:1/v1", http_transport="curl")


@pytest.mark.asyncio
async def test_exhausted_retries_name_the_backend_the_replica_and_the_cause(
    sim_server: SimHTTPServer,
) -> None:
    sim_server.faults.set_rates(FaultRates(server_error=1.0))
    llm = backend(sim_server, retry=RetryPolicy(max_retries=2, backoff=0.01))
    heard: list[RetryNotice] = []
    with retry_listener(heard.append), pytest.raises(BackendError) as err:
        await llm.chat(ASK)
    e = err.value
    assert isinstance(e, LLMError)
    assert (e.backend, e.endpoint, e.status, e.attempts) == (
        llm.name,
        sim_server.base_url,
        500,
        3,
    )
    assert str(e).startswith(f"{llm.name} at {sim_server.base_url}: HTTP 500")
    assert "injected server error" in str(e) and "gave up after 3 attempt(s)" in str(e)
    assert len(heard) == 2 and llm.stats().failed_calls == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "status", "hint"),
    [
        ({"api_key": "sk-wrong"}, 401, "check the API key"),
        ({"model": "no-such-model"}, 404, "check the model name"),
    ],
)
async def test_client_errors_are_not_retried(
    sim_server_factory: Callable[..., SimHTTPServer],
    options: dict[str, Any],
    status: int,
    hint: str,
) -> None:
    server = sim_server_factory(api_key="sk-right")
    options = {"api_key": "sk-right", **options}
    model = options.pop("model", MODEL)
    llm = OpenAIBackend(model=model, base_url=server.base_url, retry=QUICK, **options)
    heard: list[RetryNotice] = []
    with retry_listener(heard.append), pytest.raises(BackendError, match=hint) as err:
        await llm.chat(ASK)
    assert err.value.status == status and err.value.attempts == 1 and heard == []
    assert server.counters().requests == 1


@pytest.mark.asyncio
async def test_bad_parameters_are_refused_before_any_request(sim_server: SimHTTPServer) -> None:
    llm = backend(sim_server)
    with pytest.raises(ValueError, match="stream=True"):
        await llm.chat(ASK, stream=True)
    with pytest.raises(ValueError, match="n must be 1"):
        await llm.chat(ASK, n=3)
    assert sim_server.counters().requests == 0


@pytest.mark.asyncio
async def test_a_long_retry_after_is_not_waited_out(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    server = sim_server_factory(faults=FaultRates(rate_limit=1.0, retry_after=30.0))
    llm = backend(server, retry=RetryPolicy(max_retry_after=5.0, backoff=0.01))
    with pytest.raises(BackendError, match=r"asked to wait 30s, more than retry\.max_retry_after"):
        await llm.chat(ASK)


@pytest.mark.asyncio
async def test_vllm_extras_pass_through_and_known_params_stay_top_level(
    sim_server: SimHTTPServer,
) -> None:
    llm = backend(
        sim_server,
        params={"temperature": 0.0},
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    await llm.chat(ASK, max_tokens=20, ignore_eos=True, top_k=5, extra_body={"min_p": 0.1})
    body = sim_server.recorded[-1].body
    assert body["model"] == MODEL and body["max_tokens"] == 20 and body["temperature"] == 0.0
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["ignore_eos"], body["top_k"], body["min_p"]) == (True, 5, 0.1)
    assert body["messages"] == ASK


@pytest.mark.asyncio
async def test_tokens_and_cost_add_up_over_concurrent_calls(sim_server: SimHTTPServer) -> None:
    llm = backend(sim_server, cost_per_prompt_token=2e-6, cost_per_completion_token=8e-6)
    calls = [[{"role": "user", "content": f"question number {i}"}] for i in range(30)]
    out = await asyncio.gather(*(llm.chat(m, max_tokens=200) for m in calls))
    s = llm.stats()
    prompt = sum(c.usage.prompt_tokens for c in out)
    completion = sum(c.usage.completion_tokens for c in out)
    assert (s.calls, s.prompt_tokens, s.completion_tokens) == (30, prompt, completion)
    assert s.cost == pytest.approx(prompt * 2e-6 + completion * 8e-6)


@pytest.mark.asyncio
async def test_the_concurrency_cap_holds_at_the_server(sim_server: SimHTTPServer) -> None:
    llm = backend(sim_server, max_concurrency=3)
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
    await asyncio.gather(*(llm.chat(m, max_tokens=500) for m in msgs))
    c = sim_server.counters()
    assert c.answered == 24 and c.peak_in_flight == 3


@pytest.mark.asyncio
async def test_load_spreads_over_replicas_by_outstanding_requests(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    a, b = sim_server_factory(seed=1), sim_server_factory(seed=2)
    llm = backend(a, b, max_concurrency=8)
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(40)]
    await asyncio.gather(*(llm.chat(m, max_tokens=300) for m in msgs))
    served = [r.served for r in llm.stats().replicas]
    assert sum(served) == 40 and min(served) >= 10
    assert a.counters().peak_in_flight <= 8 and b.counters().peak_in_flight <= 8


@pytest.mark.asyncio
async def test_a_failing_replica_is_skipped_and_its_requests_retried_elsewhere(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    good = sim_server_factory(seed=1)
    bad = sim_server_factory(seed=2, faults=FaultRates(server_error=1.0))
    dead = closed_port_url()
    llm = backend(bad, dead, good, cooldown=30.0)
    heard: list[RetryNotice] = []
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    with retry_listener(heard.append):
        out = await asyncio.gather(*(llm.chat(m) for m in msgs))
    assert all(c.text for c in out)
    assert good.counters().answered == 20
    # Each broken replica failed at most a few first attempts, then rested.
    assert 1 <= bad.counters().requests <= 20 and {n.endpoint for n in heard} <= {
        bad.base_url,
        dead,
    }
    by_url = {r.endpoint: r for r in llm.stats().replicas}
    assert not by_url[bad.base_url].healthy and not by_url[dead].healthy
    assert by_url[good.base_url].healthy and by_url[good.base_url].served == 20
    # Later calls go straight to the healthy replica: no more retries.
    before = len(heard)
    with retry_listener(heard.append):
        await llm.chat(ASK)
    assert len(heard) == before


@pytest.mark.asyncio
async def test_when_every_replica_rests_the_first_to_recover_is_tried(
    sim_server: SimHTTPServer,
) -> None:
    sim_server.faults.inject("500", "500")
    llm = backend(sim_server, cooldown=60.0)
    c = await llm.chat(ASK)
    assert c.text and llm.stats().attempts == 3


def test_one_backend_serves_several_event_loops(sim_server: SimHTTPServer) -> None:
    llm = backend(sim_server)

    async def once() -> str:
        return (await llm.chat(ASK)).text

    # e.g. a notebook's loop and a run's background loop, one after the other
    assert asyncio.run(once()) and asyncio.run(once())
    assert llm.stats().calls == 2


@pytest.mark.asyncio
async def test_a_cancelled_call_gives_its_slot_back(sim_server: SimHTTPServer) -> None:
    sim_server.faults.inject("hang")
    llm = backend(sim_server, max_concurrency=1, timeout=30.0)
    task = asyncio.create_task(llm.chat(ASK))
    for _ in range(500):  # until the server holds the hung request
        if sim_server.counters().in_flight:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The only slot is free again: this call does not wait behind the cancelled one.
    assert (await llm.chat(ASK)).text
    assert llm.stats().in_flight == 0
