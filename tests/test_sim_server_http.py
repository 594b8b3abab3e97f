"""The loopback simulator server, over real HTTP, with the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from flashevolve_nb.clock import Clock
from flashevolve_nb.sim import Simulator, get_profile
from flashevolve_nb.sim.faults import FaultPlan, FaultRates, parse_fault
from flashevolve_nb.sim.http_server import PortInUse, SimHTTPServer

MODEL = "sim-rulebook-1"
ASK = [
    {"role": "system", "content": "Answer in one sentence. End with 'DONE'."},
    {"role": "user", "content": "What is the capital of France?"},
]


def raw_client(server: SimHTTPServer, **options: Any) -> AsyncOpenAI:
    options.setdefault("api_key", "unused")
    return AsyncOpenAI(base_url=server.base_url, max_retries=0, **options)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.asyncio
async def test_answers_as_the_in_process_simulator_does(sim_server: SimHTTPServer) -> None:
    async with raw_client(sim_server) as client:
        r = await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=400)
    # Rule one: the same prompt and seed give the same answer as the in-process backend.
    local = await Simulator("vllm", seed=0, clock=Clock(10_000)).llm().chat(ASK, max_tokens=400)
    assert r.choices[0].message.content == local.text
    assert r.choices[0].finish_reason == local.finish_reason
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        local.usage.prompt_tokens,
        local.usage.completion_tokens,
    )
    assert r.model == MODEL
    assert sim_server.counters().answered == 1


def test_models_health_and_unknown_routes(sim_server: SimHTTPServer) -> None:
    root = sim_server.base_url.removesuffix("/v1")
    assert get(f"{root}/health")[0] == 200
    status, body = get(f"{sim_server.base_url}/models")
    assert status == 200
    assert [m["id"] for m in json.loads(body)["data"]] == [MODEL]
    status, body = get(f"{root}/nothing-here")
    assert status == 404 and b"POST /v1/chat/completions" in body


def test_binds_the_loopback_interface_only(sim_server: SimHTTPServer) -> None:
    host, port = sim_server.address
    assert host == "127.0.0.1" and port == sim_server.port > 0
    assert sim_server.base_url == f"http://127.0.0.1:{port}/v1"


def test_a_busy_port_is_a_clear_error(sim_server: SimHTTPServer) -> None:
    with pytest.raises(PortInUse, match=rf"port {sim_server.port} .* in use"):
        SimHTTPServer(port=sim_server.port).start_in_thread()


@pytest.mark.asyncio
async def test_bad_requests_get_openai_shaped_errors(sim_server: SimHTTPServer) -> None:
    async with raw_client(sim_server) as client:
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.chat.completions.create(model="gpt-9", messages=ASK)
        with pytest.raises(openai.BadRequestError, match="max_tokens"):
            await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=0)
        with pytest.raises(openai.BadRequestError, match="stream"):
            await client.chat.completions.create(model=MODEL, messages=ASK, stream=True)


def test_a_body_that_is_not_json_is_a_400(sim_server: SimHTTPServer) -> None:
    req = urllib.request.Request(
        f"{sim_server.base_url}/chat/completions", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400


@pytest.mark.asyncio
async def test_an_api_key_is_required_when_set_and_never_echoed(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    server = sim_server_factory(api_key="sk-right-key")
    async with raw_client(server, api_key="sk-wrong-key") as client:
        with pytest.raises(openai.AuthenticationError) as err:
            await client.chat.completions.create(model=MODEL, messages=ASK)
    assert "sk-wrong-key" not in str(err.value) and "sk-right-key" not in str(err.value)
    async with raw_client(server, api_key="sk-right-key") as client:
        r = await client.chat.completions.create(model=MODEL, messages=ASK)
    assert r.choices[0].message.content


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error", "check"),
    [
        ("429", openai.RateLimitError, "retry-after"),
        ("500", openai.InternalServerError, ""),
        ("hang", openai.APITimeoutError, ""),
        ("malformed", ValueError, ""),
        ("drop", openai.APIConnectionError, ""),
    ],
)
async def test_each_injected_fault_reaches_the_openai_client(
    sim_server: SimHTTPServer, fault: str, error: type[BaseException], check: str
) -> None:
    sim_server.faults.inject(fault)
    async with raw_client(sim_server, timeout=0.5) as client:
        with pytest.raises(error) as err:
            await client.chat.completions.create(model=MODEL, messages=ASK)
        if check:
            assert isinstance(err.value, openai.APIStatusError)
            assert float(err.value.response.headers[check]) == pytest.approx(0.05)
        # The fault was one request only: the same client's next request is answered.
        r = await client.chat.completions.create(model=MODEL, messages=ASK)
    assert r.choices[0].message.content
    assert sim_server.faults.injected() == {parse_fault(fault): 1}
    # Faults come before the simulator: it served one request, the successful one.
    assert sim_server.simulator.server.stats().requests_served == 1


def test_random_faults_are_seeded_and_independent_of_arrival_order() -> None:
    rates = FaultRates(rate_limit=0.2, server_error=0.2, hang=0.1, drop=0.1, seed=7)
    bodies = [f"request {i}".encode() for i in range(200)] * 2

    def draws(order: list[bytes]) -> dict[tuple[bytes, int], str | None]:
        plan, seen, out = FaultPlan(rates), dict[bytes, int](), {}
        for body in order:
            n = seen[body] = seen.get(body, -1) + 1
            out[body, n] = plan.draw(body)
        return out

    forward = draws(bodies)
    assert forward == draws(list(reversed(bodies)))
    kinds = set(forward.values())
    assert kinds == {None, "rate_limit", "server_error", "hang", "drop"}
    # A retried request (same body, next occurrence) draws afresh.
    assert any(forward[b, 0] != forward[b, 1] for b in bodies[:200])
    other_seed = FaultPlan(FaultRates(rate_limit=0.2, server_error=0.2, hang=0.1, drop=0.1))
    assert [other_seed.draw(b) for b in bodies[:200]] != [forward[b, 0] for b in bodies[:200]]


def test_fault_rates_are_validated_and_parsed() -> None:
    r = FaultRates.parse("429=0.1, 500=0.05,hang=0.01", retry_after=0.2)
    assert (r.rate_limit, r.server_error, r.hang, r.retry_after) == (0.1, 0.05, 0.01, 0.2)
    with pytest.raises(ValueError, match="unknown fault 'teapot'"):
        FaultRates.parse("teapot=0.1")
    with pytest.raises(ValueError, match=r"add up to 1\.5"):
        FaultRates(rate_limit=0.9, drop=0.6)
    with pytest.raises(ValueError, match="NAME=PROBABILITY"):
        FaultRates.parse("429")


@pytest.mark.asyncio
async def test_api_profile_rate_limits_become_429_with_retry_after_in_real_seconds(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    sim = Simulator(get_profile("api", rpm_limit=2), seed=0, clock=Clock(600.0))
    server = sim_server_factory(simulator=sim)
    async with raw_client(server) as client:
        await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)
        await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)
        with pytest.raises(openai.RateLimitError, match="requests per minute") as err:
            await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)
    wait = float(err.value.response.headers["retry-after"])
    # Under a simulated minute, divided by the time scale.
    assert 0 < wait <= 60 / 600 + 1e-3


@pytest.mark.asyncio
async def test_many_concurrent_requests_on_few_connections(sim_server: SimHTTPServer) -> None:
    async with raw_client(sim_server) as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"question {i}"}],
                    max_tokens=50,
                )
                for i in range(100)
            )
        )
    assert all(r.choices[0].message.content for r in replies)
    c = sim_server.counters()
    assert c.answered == 100 and c.errors == {} and c.in_flight == 0
    assert c.peak_in_flight > 1


def test_cli_serves_on_a_free_port_and_stops_on_ctrl_c() -> None:
    env = {**os.environ, "SIM_KEY": "sk-cli-key"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashevolve_nb", "sim-server", "--port", "0",
         "--time-scale", "1000", "--api-key-env", "SIM_KEY", "--faults", "500=0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url), url

        async def ask() -> str:
            async with AsyncOpenAI(base_url=url, api_key="sk-cli-key", max_retries=0) as c:
                r = await c.chat.completions.create(model=MODEL, messages=ASK)
            return r.choices[0].message.content or ""

        assert asyncio.run(ask())
        assert "sk-cli-key" not in " ".join(proc.args)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "simulated 'vllm' server" in err and "sk-cli-key" not in err + out
