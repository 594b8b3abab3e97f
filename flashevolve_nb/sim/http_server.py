"""The simulator over HTTP: an OpenAI-compatible server on 127.0.0.1, with faults on demand.

Real clients (the ``openai`` package, ``gepa`` through LiteLLM, our
``OpenAIBackend``) talk to the very same simulated server the in-process
backend uses. Routes, as vLLM serves them:

- ``POST /v1/chat/completions``: the simulator's answer with ``usage``. It
  arrives after the simulated latency divided by the time scale, in real
  seconds, so load on the simulated server shows up as real waiting;
- ``GET /v1/models``; ``GET /health``.

It binds the loopback interface only: it is a test double, not a service.
Faults (429 with ``Retry-After``, 500, hangs, malformed bodies, dropped
connections) come from a :class:`~flashevolve_nb.sim.faults.FaultPlan`.

Run it inside a loop you own (``await server.start()``), or in a thread of
its own (``with SimHTTPServer(...) as server:``), which is what the tests'
fixture and ``flashevolve sim-server`` do. The HTTP/1.1 handling is a small
keep-alive loop on asyncio streams: enough for JSON requests from real
clients, and it lets a fault cut a connection exactly where it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.clock import Clock
from flashevolve_nb.clock_lag import LagMonitor
from flashevolve_nb.errors import FlashEvolveError
from flashevolve_nb.llm.protocol import Completion
from flashevolve_nb.sim.backend import MODEL_NAME, Simulator
from flashevolve_nb.sim.errors import RateLimited
from flashevolve_nb.sim.faults import FaultKind, FaultPlan, FaultRates

__all__ = ["HOST", "PortInUse", "Recorded", "ServerCounters", "SimHTTPServer", "SimPortInUse"]

HOST = "127.0.0.1"
_MAX_BODY = 16 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class SimPortInUse(FlashEvolveError, OSError):
    """Another process listens on the port asked for (``flashevolve sim-server``)."""


PortInUse = SimPortInUse
"""The earlier name, kept for existing imports."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One chat request as the server received it (kept when ``record`` > 0)."""

    body: Mapping[str, Any]
    fault: FaultKind | None


@dataclass(frozen=True, slots=True)
class ServerCounters:
    requests: int
    """Chat completion requests received."""
    answered: int
    """Answered with a completion (status 200, well formed)."""
    faults: Mapping[str, int]
    errors: Mapping[int, int]
    """Error answers by HTTP status, faults included."""
    open_connections: int
    in_flight: int
    """Chat requests being worked on right now."""
    peak_in_flight: int


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


class _BadRequest(Exception):
    pass


class SimHTTPServer:
    """An OpenAI-compatible loopback server in front of one :class:`Simulator`.

    ``time_scale`` simulated seconds pass per real second (ignored when a
    ``simulator`` with its own clock is given). ``api_key``: when set, requests
    must carry it as a bearer token, as a real server would ask. ``record``:
    keep the last N chat requests for inspection.
    """

    def __init__(
        self,
        simulator: Simulator | None = None,
        *,
        profile: str = "vllm",
        seed: int = 0,
        time_scale: float = 120.0,
        port: int = 0,
        api_key: str | None = None,
        faults: FaultRates | FaultPlan | None = None,
        model_name: str = MODEL_NAME,
        record: int = 0,
        sample_every: float | None = None,
    ) -> None:
        self.simulator = simulator or Simulator(profile, seed=seed, clock=Clock(time_scale))
        self.port = port
        self.model_name = model_name
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan(faults)
        self.recorded: deque[Recorded] = deque(maxlen=max(0, record))
        self._api_key = api_key
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._requests = 0
        self._answered = 0
        self._errors: Counter[int] = Counter()
        self._ids = 0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Load samples for benchmarks (GET /sim/samples): every ``sample_every`` real
        # seconds, with the peak of in-flight requests since the previous sample, so a
        # short burst between two samples is not missed.
        self.sample_every = sample_every
        self._samples: deque[dict[str, float]] = deque(maxlen=1_000_000)
        self._peak_since_sample = 0
        self._sampler: asyncio.Task[None] | None = None
        # With samples on (a benchmark), how late the server's own loop wakes: a late
        # server stretches every simulated latency it serves (``/sim/stats`` lag_*).
        self._lag = LagMonitor(self.time_scale)

    # ---- addresses and counters -------------------------------------------
    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def time_scale(self) -> float:
        return self.simulator.clock.time_scale

    def counters(self) -> ServerCounters:
        return ServerCounters(
            requests=self._requests,
            answered=self._answered,
            faults={str(k): n for k, n in self.faults.injected().items()},
            errors=dict(self._errors),
            open_connections=len(self._connections),
            in_flight=self._in_flight,
            peak_in_flight=self._peak_in_flight,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the listening socket is bound to."""
        if self._server is None:
            raise RuntimeError("the server is not listening: start it first")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def __repr__(self) -> str:
        return (
            f"SimHTTPServer({self.base_url}, profile={self.simulator.profile.kind!r}, "
            f"time_scale={self.time_scale:g}, simulated)"
        )

    # ---- lifecycle in the caller's loop ------------------------------------
    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port when ``port`` is 0)."""
        try:
            self._server = await asyncio.start_server(
                self._serve_connection, host=HOST, port=self.port, limit=_MAX_BODY
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SimPortInUse(
                    exc.errno,
                    f"port {self.port} on {HOST} is already in use; pick another port, "
                    "or 0 for any free one",
                ) from None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        if self.sample_every is not None and self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever())
            self._lag.start()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.aclose()

    # ---- load samples (benchmarks) ---------------------------------------------
    def load_snapshot(self) -> dict[str, float]:
        """The simulated server's load now, with cumulative integrals (for windowed means).

        Call it on the server's loop (the ``/sim/stats`` route does). Times are
        simulated seconds; ``running_area`` / ``in_flight_area`` are the integrals
        of running sequences / requests at the server over simulated time.
        """
        if not self.simulator.clock.started:
            self.simulator.clock.start()  # load is measured from the first look on
        st = self.simulator.server.stats()
        profile = self.simulator.profile
        cap = float(getattr(profile, "max_running", 0) or getattr(profile, "max_concurrency", 0))
        return {
            "t": st.now,
            "http_in_flight": self._in_flight,
            "peak": self._peak_since_sample,
            "running": st.running,
            "waiting": st.waiting,
            "tokens_generated": st.tokens_generated,
            "requests_served": st.requests_served,
            "running_area": st.mean_running * st.now,
            "in_flight_area": st.mean_in_flight * st.now,
            "capacity_tokens_per_s": st.capacity_tokens_per_s,
            "max_running": cap,
            "time_scale": self.time_scale,
            # The server process's CPU seconds and a real-time stamp: a benchmark
            # tells from them whether the server, not the model it simulates,
            # was the bottleneck (a fast clock on a small machine).
            "cpu_seconds": time.process_time(),
            "wall": time.perf_counter(),
        }

    def take_samples(self) -> list[dict[str, float]]:
        """The load samples taken since the last call (oldest first), and forget them."""
        out = list(self._samples)
        self._samples.clear()
        return out

    async def _sample_forever(self) -> None:
        assert self.sample_every is not None
        while True:
            self._samples.append(self.load_snapshot())
            self._peak_since_sample = self._in_flight
            await asyncio.sleep(self.sample_every)

    async def aclose(self) -> None:
        await self._lag.aclose()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ---- lifecycle in a thread of its own -----------------------------------
    def start_in_thread(self) -> SimHTTPServer:
        """Serve from a daemon thread with its own loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("this server already runs in a thread")
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.aclose())
                loop.close()

        self._thread = threading.Thread(target=main, name="flashevolve-sim-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and wait for its thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimHTTPServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- HTTP ----------------------------------------------------------------
    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    await self._send_error(writer, 400, str(exc), keep_alive=False)
                    break
                if request is None:
                    break
                if not await self._route(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must close."""
        path = req.path.split("?", 1)[0].rstrip("/")
        if path in ("/sim/stats", "/sim/samples") and req.method == "GET":
            if not self._authorized(req):
                return await self._unauthorized(writer, req)
            if path == "/sim/stats":
                payload: Any = {**self.load_snapshot(), **self._lag.totals()}
            else:
                payload = self.take_samples()
            await _send_json(writer, 200, payload, req.keep_alive)
            return req.keep_alive
        if path == "/health" and req.method == "GET":
            await _send(writer, 200, b"", keep_alive=req.keep_alive, content_type="text/plain")
            return req.keep_alive
        if path == "/v1/models" and req.method == "GET":
            if not self._authorized(req):
                return await self._unauthorized(writer, req)
            model = {"id": self.model_name, "object": "model", "created": 0,
                     "owned_by": "flashevolve-simulator", "max_model_len": None}  # fmt: skip
            await _send_json(writer, 200, {"object": "list", "data": [model]}, req.keep_alive)
            return req.keep_alive
        if path == "/v1/chat/completions":
            if req.method != "POST":
                await self._send_error(writer, 405, "use POST", keep_alive=req.keep_alive)
                return req.keep_alive
            return await self._chat(req, reader, writer)
        await self._send_error(
            writer, 404, f"no route {req.method} {path}; this server offers "
            "POST /v1/chat/completions, GET /v1/models and GET /health",
            keep_alive=req.keep_alive,
        )  # fmt: skip
        return req.keep_alive

    async def _chat(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        self._requests += 1
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        self._peak_since_sample = max(self._peak_since_sample, self._in_flight)
        try:
            return await self._chat_in_flight(req, reader, writer)
        finally:
            self._in_flight -= 1

    async def _chat_in_flight(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        keep = req.keep_alive
        if not self._authorized(req):
            return await self._unauthorized(writer, req)
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages
            ):
                raise ValueError("'messages' must be a list of {role, content} objects")
        except ValueError as exc:
            await self._send_error(writer, 400, f"bad request: {exc}", keep_alive=keep)
            return keep
        if body.get("model") != self.model_name:
            await self._send_error(
                writer, 404, f"The model `{body.get('model')}` does not exist; this "
                f"simulated server serves `{self.model_name}`", keep_alive=keep,
                kind="NotFoundError",
            )  # fmt: skip
            return keep
        if body.get("stream"):
            await self._send_error(
                writer, 400, "stream=true is not supported by the simulator server", keep_alive=keep
            )
            return keep
        fault = self.faults.draw(req.body)
        if self.recorded.maxlen:
            self.recorded.append(Recorded(body, fault))
        if fault is not None:
            return await self._fault(fault, reader, writer, keep)
        params = {k: body[k] for k in ("max_tokens", "max_completion_tokens", "temperature")
                  if body.get(k) is not None}  # fmt: skip
        try:
            completion = await self.simulator.llm("task").chat(messages, **params)
        except RateLimited as exc:
            return await self._rate_limited(
                writer, exc.retry_after / self.time_scale, str(exc), keep
            )
        except ValueError as exc:
            await self._send_error(writer, 400, f"bad request: {exc}", keep_alive=keep)
            return keep
        # Counted before the write: the client may read the answer (and a test the
        # counters) before this coroutine runs again after the write.
        self._answered += 1
        await _send_json(writer, 200, self._completion_body(completion), keep)
        return keep

    def _completion_body(self, c: Completion) -> dict[str, Any]:
        self._ids += 1
        return {
            "id": f"chatcmpl-sim-{self._ids}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            # Clients may tell a simulated answer by this (OpenAIBackend.simulated does).
            "system_fingerprint": "flashevolve-simulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": c.usage.prompt_tokens,
                "completion_tokens": c.usage.completion_tokens,
                "total_tokens": c.usage.total_tokens,
            },
            "simulated_latency": c.latency,
        }

    async def _fault(
        self,
        fault: FaultKind,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep: bool,
    ) -> bool:
        rates = self.faults.rates
        if fault == "rate_limit":
            return await self._rate_limited(writer, rates.retry_after, "injected rate limit", keep)
        if fault == "server_error":
            await self._send_error(
                writer, 500, "injected server error", keep_alive=keep, kind="InternalServerError"
            )
            return keep
        if fault == "malformed":
            cut = b'{"id": "chatcmpl-sim-broken", "object": "chat.completion", "choices": [{"in'
            await _send(writer, 200, cut, keep_alive=keep)
            return keep
        if fault == "hang":
            # Until the client hangs up (EOF) or hang_seconds pass; either way, no answer.
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(), rates.hang_seconds)
            return False
        # drop: reset the connection with the request read and nothing sent
        writer.transport.abort()
        return False

    async def _rate_limited(
        self, writer: asyncio.StreamWriter, retry_after: float, message: str, keep: bool
    ) -> bool:
        headers = {
            "retry-after": f"{retry_after:.3f}",
            "retry-after-ms": f"{retry_after * 1000:.0f}",
        }
        await self._send_error(
            writer, 429, message, keep_alive=keep, kind="RateLimitError", headers=headers
        )
        return keep

    def _authorized(self, req: _Request) -> bool:
        if self._api_key is None:
            return True
        given = req.headers.get("authorization", "")
        expected = f"Bearer {self._api_key}"
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _unauthorized(self, writer: asyncio.StreamWriter, req: _Request) -> bool:
        # Never echo what was sent: a wrong key is still somebody's key.
        await self._send_error(
            writer, 401, "invalid or missing API key", keep_alive=req.keep_alive,
            kind="AuthenticationError",
        )  # fmt: skip
        return req.keep_alive

    async def _send_error(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        *,
        keep_alive: bool,
        kind: str = "BadRequestError",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._errors[status] += 1
        body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        await _send_json(writer, status, body, keep_alive, headers)


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request off the connection; None when the client closed it cleanly."""
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise _BadRequest(f"malformed request line {line[:80]!r}") from None
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest(f"malformed header line {raw[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest("content-length is not a number") from None
        if length < 0 or length > _MAX_BODY:
            raise _BadRequest(f"content-length {length} out of range")
        body = await reader.readexactly(length) if length else b""
    return _Request(method.upper(), target, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest("malformed chunk size") from None
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers: none are meaningful here
            return b"".join(parts)
        total += size
        if total > _MAX_BODY:
            raise _BadRequest("body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: Any,
    keep_alive: bool,
    headers: Mapping[str, str] | None = None,
) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    await _send(writer, status, body, keep_alive=keep_alive, headers=headers)
