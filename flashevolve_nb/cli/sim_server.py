"""``flashevolve sim-server``: the simulator as an OpenAI-compatible server on 127.0.0.1.

For pointing real clients (the ``openai`` package, ``gepa`` through LiteLLM,
``OpenAIBackend``) at the same simulated server the offline demo uses, with
faults on demand. The first line printed is the base URL, so a script can
read it when it asked for a free port (``--port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

from flashevolve_nb.sim.backend import MODEL_NAME
from flashevolve_nb.sim.faults import FaultRates
from flashevolve_nb.sim.http_server import SimHTTPServer, SimPortInUse

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim-server",
        help="serve the simulator over HTTP (OpenAI-compatible, 127.0.0.1 only)",
        description=(
            "Serve the offline simulator as an OpenAI-compatible HTTP server on 127.0.0.1: "
            "POST /v1/chat/completions, GET /v1/models, GET /health. Answers are simulated; "
            "they arrive after the simulated latency divided by the time scale."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1; 0 for a free one")
    p.add_argument("--profile", default="vllm", choices=["vllm", "api"], help="simulated server")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated answers and faults")
    p.add_argument(
        "--time-scale", type=float, default=120.0, help="simulated seconds per real second"
    )
    p.add_argument("--model-name", default=MODEL_NAME, help="the model id clients must ask for")
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="require the API key held in environment variable VAR (the key itself never "
        "goes on a command line)",
    )
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="random faults per request, e.g. '429=0.05,500=0.02,hang=0.01,malformed=0.01,"
        "drop=0.01'",
    )
    p.add_argument(
        "--retry-after", type=float, default=0.05, help="seconds an injected 429 asks to wait"
    )
    p.add_argument(
        "--hang-seconds", type=float, default=30.0, help="how long an injected hang lasts"
    )
    p.set_defaults(handler=_handle, command_parser=p)


def _handle(args: argparse.Namespace) -> int:
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that variable is unset or empty")
    faults = FaultRates.parse(
        args.faults, retry_after=args.retry_after, hang_seconds=args.hang_seconds, seed=args.seed
    )
    server = SimHTTPServer(
        profile=args.profile,
        seed=args.seed,
        time_scale=args.time_scale,
        port=args.port,
        api_key=api_key,
        faults=faults,
        model_name=args.model_name,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(server, faults))
    except SimPortInUse as exc:
        print(f"flashevolve sim-server: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


async def _serve(server: SimHTTPServer, faults: FaultRates) -> None:
    await server.start()
    print(server.base_url, flush=True)
    shown = ", ".join(
        f"{k}={getattr(faults, k):g}"
        for k in ("rate_limit", "server_error", "hang", "malformed", "drop")
        if getattr(faults, k)
    )
    print(
        f"serving the simulated {server.simulator.profile.kind!r} server (model "
        f"{server.model_name!r}, time scale {server.time_scale:g}x"
        + (f", faults {shown}" if shown else "")
        + "); Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    await server.serve_forever()
