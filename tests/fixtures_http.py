"""Pytest fixtures for real HTTP against the loopback simulator server.

``sim_server``: a fresh server in its own thread on a free 127.0.0.1 port,
fast time scale, recording the last requests. ``sim_server_factory``: the
same with options (``api_key=``, ``faults=``, ``profile=``, ...). Servers
stop when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flashevolve_nb.sim.http_server import SimHTTPServer

__all__ = ["sim_server", "sim_server_factory"]

FAST = 600.0
"""Simulated seconds per real second in tests: a 700-token answer takes ~15 ms."""


@pytest.fixture
def sim_server_factory() -> Iterator[Callable[..., SimHTTPServer]]:
    started: list[SimHTTPServer] = []

    def make(**options: Any) -> SimHTTPServer:
        options.setdefault("time_scale", FAST)
        options.setdefault("record", 64)
        server = SimHTTPServer(**options).start_in_thread()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sim_server(sim_server_factory: Callable[..., SimHTTPServer]) -> SimHTTPServer:
    return sim_server_factory()
