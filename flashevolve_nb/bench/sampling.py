"""The server's side of a benchmark: its process, its load samples, one window per system.

Every system's in-flight requests, running sequences and generated tokens are
read from the same place, the server (``GET /sim/stats`` and ``/sim/samples``
of :class:`~flashevolve_nb.sim.http_server.SimHTTPServer`), so the figures do
not depend on how each client counts. A :class:`ServerWindow` is what the
server saw between the start and the end of one system's run: means come
from the server's exact load integrals, the peak from samples that keep the
peak since the previous sample.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ServerProcess", "ServerWindow", "window"]

_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True, slots=True)
class ServerWindow:
    """Server-side figures of one run (simulated seconds)."""

    sim_seconds: float
    tokens_generated: int
    requests_served: int
    mean_running: float
    mean_in_flight: float
    peak_in_flight: int
    max_running: int
    capacity_tokens_per_s: float
    series: tuple[tuple[float, int, int], ...]
    """(seconds since the window's start, requests in flight, sequences running)."""
    server_cpu: float = float("nan")
    """The server process's CPU seconds per real second over the window (1.0: one
    core busy all along, so the server was the bottleneck, not the model it plays)."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_generated / self.sim_seconds if self.sim_seconds > 0 else 0.0

    @property
    def running_utilisation(self) -> float:
        """Mean running sequences / the server's cap on them."""
        return self.mean_running / self.max_running if self.max_running else 0.0

    @property
    def token_utilisation(self) -> float:
        """Generated tokens/s / the server's capacity at its cap."""
        cap = self.capacity_tokens_per_s
        return self.tokens_per_s / cap if cap else 0.0


def window(
    start: dict[str, Any], end: dict[str, Any], samples: list[dict[str, Any]]
) -> ServerWindow:
    """The figures between two ``/sim/stats`` snapshots, with the samples taken meanwhile."""
    t0, t1 = float(start["t"]), float(end["t"])
    dt = max(t1 - t0, 1e-9)
    inside = [s for s in samples if t0 <= float(s["t"]) <= t1]
    peaks = [int(s["peak"]) for s in inside] + [int(end["peak"])]
    return ServerWindow(
        sim_seconds=t1 - t0,
        tokens_generated=int(end["tokens_generated"]) - int(start["tokens_generated"]),
        requests_served=int(end["requests_served"]) - int(start["requests_served"]),
        mean_running=(float(end["running_area"]) - float(start["running_area"])) / dt,
        mean_in_flight=(float(end["in_flight_area"]) - float(start["in_flight_area"])) / dt,
        peak_in_flight=max(peaks),
        max_running=int(end["max_running"]),
        capacity_tokens_per_s=float(end["capacity_tokens_per_s"]),
        series=tuple(
            (float(s["t"]) - t0, int(s["http_in_flight"]), int(s["running"])) for s in inside
        ),
        server_cpu=_cpu_share(start, end),
    )


def _cpu_share(start: dict[str, Any], end: dict[str, Any]) -> float:
    if "cpu_seconds" not in start or "cpu_seconds" not in end:
        return float("nan")  # a server from before these fields
    wall = float(end["wall"]) - float(start["wall"])
    cpu = float(end["cpu_seconds"]) - float(start["cpu_seconds"])
    return cpu / wall if wall > 0 else float("nan")


class ServerProcess:
    """A simulator server in a child process (``python3 -m flashevolve_nb.bench.serve``).

    Use as a context manager; ``base_url``, ``model`` and ``time_scale`` are
    what clients need. ``snapshot()`` / ``samples()`` read its load.
    """

    def __init__(
        self, profile: str, *, seed: int = 0, time_scale: float = 240.0, sample_every: float = 0.02
    ) -> None:
        self.profile = profile
        self.seed = seed
        self.time_scale = time_scale
        self.sample_every = sample_every
        self.model = "sim-rulebook-1"
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._http: httpx.Client | None = None

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "flashevolve_nb.bench.serve", "--profile", self.profile,
             "--seed", str(self.seed), "--time-scale", repr(self.time_scale),
             "--sample-every", repr(self.sample_every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", line):
            self.stop()
            raise RuntimeError(
                f"the benchmark's simulator server did not start (it printed {line!r}); "
                "run `python3 -m flashevolve_nb.bench.serve` to see its error"
            )
        self.base_url = line
        self._http = httpx.Client(base_url=line.removesuffix("/v1"), timeout=30.0)
        return self

    def snapshot(self) -> dict[str, Any]:
        assert self._http is not None, "start the server first"
        data: dict[str, Any] = self._http.get("/sim/stats").raise_for_status().json()
        return data

    def samples(self) -> list[dict[str, Any]]:
        assert self._http is not None, "start the server first"
        data: list[dict[str, Any]] = self._http.get("/sim/samples").raise_for_status().json()
        return data

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerProcess({self.profile!r}, {self.base_url or 'not started'}, simulated)"
