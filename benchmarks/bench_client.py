"""Micro-benchmark: OpenAIBackend's own cost per call, and sustained requests/s at 256 in flight.

Both measurements run against the same loopback simulator server
(``flashevolve sim-server``) in a subprocess, so the server has its own
process; with a huge time scale its simulated latency is ~0, and what is
measured is HTTP, JSON and the client layers.

1. Overhead per call: one request at a time, the raw ``openai`` client and
   ``OpenAIBackend`` alternating call by call (so drift hits both alike);
   the difference of the medians is what our layer (balancer, retry loop,
   request building, parsing, accounting) adds.
2. Throughput: 256 requests in flight at all times, for each client (the raw
   client, then ``OpenAIBackend`` on each ``http_transport``) in alternating
   rounds; the median round's requests per second of wall time and client CPU
   per request (this process only: the figure a fast run is bound by).

Prints a table; nothing is asserted. Run: ``python3 benchmarks/bench_client.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai

from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.retry import RetryPolicy

MODEL = "sim-rulebook-1"
MESSAGES = [{"role": "user", "content": "Name one prime number. End with 'DONE'."}]
PARAMS: dict[str, Any] = {"max_tokens": 16, "temperature": 0.0}


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "flashevolve_nb", "sim-server", "--port", "0",
         "--time-scale", "1e6"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url):
        proc.kill()
        raise SystemExit(f"the sim-server did not start (said {url!r})")
    return proc, url


def raw_client(url: str, connections: int) -> openai.AsyncOpenAI:
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=connections + 16, max_keepalive_connections=connections
    )
    return openai.AsyncOpenAI(
        base_url=url,
        api_key="unused",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )


def ours(url: str, connections: int, transport: str = "auto") -> OpenAIBackend:
    return OpenAIBackend(
        model=MODEL,
        base_url=url,
        max_concurrency=connections,
        retry=RetryPolicy(max_retries=0),
        http_transport=transport,
    )


async def overhead(url: str, calls: int, warmup: int) -> dict[str, float]:
    raw = raw_client(url, 4)
    mine = ours(url, 4)

    async def call_raw() -> None:
        r = await raw.chat.completions.create(model=MODEL, messages=MESSAGES, **PARAMS)  # type: ignore[arg-type]
        assert r.choices[0].message.content

    async def call_ours() -> None:
        c = await mine.chat(MESSAGES, **PARAMS)
        assert c.text

    t_raw: list[float] = []
    t_ours: list[float] = []
    cpu = {"raw": 0.0, "ours": 0.0}
    for i in range(warmup + calls):
        for key, fn, out in (("raw", call_raw, t_raw), ("ours", call_ours, t_ours)):
            t0, c0 = time.perf_counter(), time.process_time()
            await fn()
            if i >= warmup:
                out.append(time.perf_counter() - t0)
                # This process's CPU only (the server has its own): less swayed by
                # other load on the machine than wall time.
                cpu[key] += time.process_time() - c0
    await raw.close()
    await mine.aclose()
    return {
        "raw_median_ms": statistics.median(t_raw) * 1e3,
        "ours_median_ms": statistics.median(t_ours) * 1e3,
        "raw_mean_ms": statistics.fmean(t_raw) * 1e3,
        "ours_mean_ms": statistics.fmean(t_ours) * 1e3,
        "overhead_median_us": (statistics.median(t_ours) - statistics.median(t_raw)) * 1e6,
        "overhead_mean_us": (statistics.fmean(t_ours) - statistics.fmean(t_raw)) * 1e6,
        "raw_cpu_us": cpu["raw"] / calls * 1e6,
        "ours_cpu_us": cpu["ours"] / calls * 1e6,
    }


async def sustained(
    call: Callable[[], Awaitable[None]], concurrency: int, requests: int
) -> tuple[float, float]:
    """Requests per second of wall time, and client CPU seconds per request, with
    ``concurrency`` in flight until ``requests`` are done."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - t0), (time.process_time() - c0) / requests


async def throughput(
    url: str, concurrency: int, requests: int, rounds: int, transports: list[str]
) -> dict[str, dict[str, float]]:
    """Per client (the raw ``openai`` client, then ``OpenAIBackend`` on each transport):
    median requests/s and client CPU per request over alternating rounds."""
    raw = raw_client(url, concurrency)
    mine = {t: ours(url, concurrency, t) for t in transports}

    async def call_raw() -> None:
        await raw.chat.completions.create(model=MODEL, messages=MESSAGES, **PARAMS)  # type: ignore[arg-type]

    def call_ours(backend: OpenAIBackend) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            await backend.chat(MESSAGES, **PARAMS)

        return call

    calls: dict[str, Callable[[], Awaitable[None]]] = {"raw": call_raw}
    calls.update({t: call_ours(b) for t, b in mine.items()})
    for call in calls.values():  # warm the connection pools
        await sustained(call, concurrency, concurrency)
    # Alternating rounds, so that other load on the machine hits every client alike.
    per_round = max(concurrency, requests // rounds)
    seen: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            seen[key].append(await sustained(call, concurrency, per_round))
    assert all(b.stats().failed_calls == 0 for b in mine.values())
    await raw.close()
    for b in mine.values():
        await b.aclose()
    return {
        k: {
            "rps": statistics.median(r for r, _ in v),
            "cpu_us": statistics.median(c for _, c in v) * 1e6,
        }
        for k, v in seen.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=400, help="sequential calls per client")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--requests", type=int, default=6000, help="requests per client, in all")
    ap.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument(
        "--transports",
        default="httpx,aiohttp",
        help="OpenAIBackend http_transport values to compare, comma-separated",
    )
    args = ap.parse_args()
    transports = [t for t in args.transports.split(",") if t]

    proc, url = start_server()
    try:
        o = asyncio.run(overhead(url, args.calls, warmup=50))
        t = asyncio.run(throughput(url, args.concurrency, args.requests, args.rounds, transports))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)

    print(
        f"OpenAI-compatible client layer against the loopback simulator server ({url}, "
        f"time scale 1e6: simulated latency ~0)\n"
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"openai {openai.__version__}; server in its own process; load average "
        f"{os.getloadavg()[0]:.1f} (other work on the machine skews the figures)\n"
    )
    print(f"per call, one at a time ({args.calls} calls each, interleaved):")
    for label, key in (("raw openai client", "raw"), ("OpenAIBackend", "ours")):
        med, mean = o[f"{key}_median_ms"], o[f"{key}_mean_ms"]
        cpu = o[f"{key}_cpu_us"]
        print(f"  {label:<19} median {med:.3f} ms   mean {mean:.3f} ms   client CPU {cpu:.0f} us")
    print(
        f"  our overhead        median {o['overhead_median_us']:+.0f} us   "
        f"mean {o['overhead_mean_us']:+.0f} us   "
        f"client CPU {o['ours_cpu_us'] - o['raw_cpu_us']:+.0f} us per call"
    )
    print(
        f"\nsustained, {args.concurrency} requests in flight ({args.requests} requests each, "
        f"median of {args.rounds} alternating rounds):"
    )
    for key, fig in t.items():
        label = "raw openai client" if key == "raw" else f"OpenAIBackend, {key}"
        rate, cpu = fig["rps"], fig["cpu_us"]
        print(f"  {label:<26} {rate:6.0f} requests/s   client CPU {cpu:5.0f} us/request")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**o, "sustained": t, "concurrency": args.concurrency}, f, indent=2)


if __name__ == "__main__":
    main()
