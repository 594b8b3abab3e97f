"""A recording pass-through in front of a real engine: what every system really asked for.

Systems under test talk to the tap's ``base_url``; it forwards each request
to the engine unchanged (except for the kind header, which it removes) and
records, per request, what was asked (``max_tokens``, ``ignore_eos``, the
kind of call) and what the engine reported (status, ``usage``, finish
reason) with the wall times it was open. Counting on the wire, the same way
for the real ``gepa`` and for our pipeline, is what makes their figures
comparable: neither system's own bookkeeping is trusted.

Requests are attributed to the tap's current ``label`` (set it before each
system runs; systems run one after another). Answers are buffered whole:
streaming is not supported (no system under test streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["CLIENT_GONE", "KIND_HEADER", "EngineTap", "TappedRequest"]

HOST = "127.0.0.1"
CLIENT_GONE = 499
"""Status recorded for a request whose client hung up before the answer (nginx's code)."""
_HANGUP_POLL = 0.2
KIND_HEADER = "x-flashevolve-kind"
"""Request header naming the kind of call (``task``, ``reflection``...); the tap strips it."""
_MAX_BODY = 64 * 1024 * 1024
# Hop-by-hop and framing headers are the tap's own business on each side.
_DROP = frozenset(
    {"host", "connection", "keep-alive", "content-length", "transfer-encoding", "te",
     "upgrade", "proxy-connection", "accept-encoding", KIND_HEADER}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TappedRequest:
    """One request as the tap saw it; times are ``time.monotonic()`` seconds."""

    label: str
    path: str
    kind: str | None
    started: float
    finished: float
    status: int
    max_tokens: int | None
    ignore_eos: bool
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    error: str = ""
    """For a failed request, what the engine (or the tap, for 502) said, cut to 300 chars."""

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat(self) -> bool:
        return self.path.rstrip("/").endswith("/chat/completions")


class EngineTap:
    """Forward ``http://127.0.0.1:<port>/...`` to ``upstream`` (a base URL ending in ``/v1``).

    ``with EngineTap(server.base_url) as tap: run(base_url=tap.base_url)``.
    Runs in a daemon thread with its own event loop.
    """

    def __init__(
        self,
        upstream: str,
        *,
        label: str = "",
        fence_kinds: frozenset[str] = frozenset(),
        natural_stops: bool = False,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.label = label
        self.fence_kinds = fence_kinds
        self.natural_stops = natural_stops
        self.port = 0
        self._records: list[TappedRequest] = []
        self._lock = threading.Lock()
        self._open = 0
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the tap is not listening yet: start() it first")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def in_flight(self) -> int:
        return self._open

    def records(self, label: str | None = None) -> tuple[TappedRequest, ...]:
        """Every request recorded so far, or those made under ``label``."""
        with self._lock:
            out = tuple(self._records)
        return out if label is None else tuple(r for r in out if r.label == label)

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> EngineTap:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._aclose())
                loop.close()

        self._thread = threading.Thread(target=main, name="flashevolve-engine-tap", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def close(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> EngineTap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"port {self.port}" if self.port else "not listening"
        return f"EngineTap({self.upstream!r}, {where}, {len(self._records)} requests)"

    async def _listen(self) -> None:
        # No pool limit: the systems' own concurrency is what is being measured.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        self._client = httpx.AsyncClient(timeout=None, limits=limits)
        self._server = await asyncio.start_server(self._serve, host=HOST, port=0, limit=_MAX_BODY)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ---- HTTP ------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ValueError:
            pass  # not HTTP (a malformed request line or length): drop the connection
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length > 0 else b""
        keep_alive = headers.get("connection", "").lower() != "close"

        started = time.monotonic()
        self._open += 1
        try:
            answer = await self._forward_unless_gone(reader, method, target, headers, body)
        finally:
            self._open -= 1
        finished = time.monotonic()
        status, reply, content_type = answer or (CLIENT_GONE, b"", "application/json")
        if method.upper() == "POST":
            self._record(target, headers.get(KIND_HEADER), started, finished, status, body, reply)
        if answer is None:
            return False
        if status == 200 and (self.fence_kinds or self.natural_stops):
            reply = self._shape(reply, headers.get(KIND_HEADER), _json(body))

        head = [
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
            f"content-type: {content_type}",
            f"content-length: {len(reply)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply)
        await writer.drain()
        return keep_alive

    def _shape(self, reply: bytes, kind: str | None, asked: Mapping[str, Any]) -> bytes:
        """The answer as the client sees it when shaping is on (the record keeps the engine's).

        A random-weights model never writes a fenced block and, with
        ``ignore_eos``, always stops at the length limit; our parser refuses
        both, gepa's takes any text. Left alone, our pipeline would drop every
        proposal unevaluated while gepa evaluates each one, so the two would do
        different work per proposal. ``fence_kinds``: answers of these kinds
        are wrapped in a fenced block (the gibberish itself is unchanged);
        ``natural_stops``: a replayed length (``ignore_eos``) is reported as a
        natural stop, which is what the replay stands for.
        """
        answer = _json(reply)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return reply
        choice = choices[0]
        message = choice.get("message")
        if kind in self.fence_kinds and isinstance(message, dict):
            message["content"] = _fenced(str(message.get("content") or ""))
        if self.natural_stops and asked.get("ignore_eos") is True:
            choice["finish_reason"] = "stop"
        return json.dumps(answer).encode()

    async def _forward_unless_gone(
        self,
        reader: asyncio.StreamReader,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, bytes, str] | None:
        """The engine's answer, or None when the client hung up first.

        A client that gives up on a request (our speculation cancels calls)
        closes its connection, and vLLM then aborts the request and frees its
        slot. Through the tap it must go the same way: the upstream request is
        cancelled too, or the engine would keep decoding for nobody.
        """
        forward = asyncio.ensure_future(self._forward(method, target, headers, body))
        try:
            while True:
                done, _ = await asyncio.wait({forward}, timeout=_HANGUP_POLL)
                if done:
                    return forward.result()
                if reader.at_eof():
                    forward.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await forward
                    return None
        except asyncio.CancelledError:
            forward.cancel()
            raise

    async def _forward(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        assert self._client is not None
        # target is "/v1/..." and upstream ends in "/v1": join without doubling it.
        root = self.upstream.removesuffix("/v1")
        sent = {k: v for k, v in headers.items() if k not in _DROP}
        try:
            r = await self._client.request(method, root + target, headers=sent, content=body)
        except httpx.HTTPError as exc:
            detail = json.dumps({"error": {"message": f"engine tap: upstream failed: {exc!r}"}})
            return 502, detail.encode(), "application/json"
        return r.status_code, r.content, r.headers.get("content-type", "application/json")

    def _record(
        self,
        target: str,
        kind: str | None,
        started: float,
        finished: float,
        status: int,
        body: bytes,
        reply: bytes,
    ) -> None:
        asked = _json(body)
        answer = _json(reply) if status == 200 else {}
        error = "" if status == 200 else reply[:300].decode("utf-8", "replace")
        usage = answer.get("usage") or {}
        choices = answer.get("choices") or [{}]
        max_tokens = asked.get("max_tokens", asked.get("max_completion_tokens"))
        record = TappedRequest(
            label=self.label,
            path=target.split("?", 1)[0],
            kind=kind,
            started=started,
            finished=finished,
            status=status,
            max_tokens=int(max_tokens) if isinstance(max_tokens, int) else None,
            ignore_eos=asked.get("ignore_eos") is True,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choices[0].get("finish_reason") if isinstance(choices[0], dict) else None,
            error=error,
        )
        with self._lock:
            self._records.append(record)


def _fenced(text: str) -> str:
    return f"```\n{text.strip()}\n```"


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
