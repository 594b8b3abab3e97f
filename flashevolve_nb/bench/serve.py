"""The benchmark's simulator server, in a process of its own.

``python3 -m flashevolve_nb.bench.serve --profile vllm --time-scale 240``
prints its base URL on one line, then serves (with load sampling on) until
its stdin closes or it is terminated. A process of its own, as a real server
would be: the clients under test do not share an interpreter (and its GIL)
with the server whose load is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from flashevolve_nb.sim.http_server import SimHTTPServer

__all__ = ["main"]


async def _serve(args: argparse.Namespace) -> None:
    server = SimHTTPServer(
        profile=args.profile, seed=args.seed, time_scale=args.time_scale,
        sample_every=args.sample_every,
    )  # fmt: skip
    await server.start()
    print(server.base_url, flush=True)
    loop = asyncio.get_running_loop()
    # stdin closing (the parent exiting, however it exits) ends the server
    try:
        await loop.run_in_executor(None, sys.stdin.read)
    finally:
        await server.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="vllm", choices=("vllm", "api"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=240.0)
    parser.add_argument(
        "--sample-every", type=float, default=0.02, help="real seconds between load samples"
    )
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
