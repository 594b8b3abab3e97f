"""The HTTP under :class:`~flashevolve_nb.llm.openai_backend.OpenAIBackend`'s ``openai`` clients.

Requests always go through the official ``openai`` client (its headers, auth,
timeouts and status errors); what this module chooses is the HTTP transport
beneath it and how the answer is read:

- ``aiohttp``: the client's documented ``DefaultAioHttpClient`` (``pip install
  "openai[aiohttp]"``), which the ``openai`` package recommends "for improved
  concurrency performance". Measured here (``benchmarks/bench_client.py``):
  about a third less client CPU per request than the default transport at 64
  to 256 requests in flight, where a fast run spends most of its CPU;
- ``httpx``: the client's default, sharded into pools of
  :data:`SHARD_CONNECTIONS` (its pool looks through every connection on each
  request, so eight pools of 32 cost far less than one of 256);
- ``auto`` (the default): ``aiohttp`` when it is installed, else ``httpx``.

An answer is read as the raw HTTP response (the client's documented
``cast_to=Response`` for undocumented endpoints) and decoded with ``json``:
turning it into the client's pydantic ``ChatCompletion`` first cost more CPU
than the whole rest of our per-request work, for three fields we read.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

import openai
from openai import AsyncOpenAI

from flashevolve_nb.llm.secret import redact_url

if TYPE_CHECKING:
    from flashevolve_nb.llm.config import OpenAIConfig

__all__ = [
    "SHARD_CONNECTIONS",
    "ClientShards",
    "aiohttp_available",
    "is_timeout",
    "post_chat",
    "resolve_transport",
]

SHARD_CONNECTIONS = 32
"""Connections per httpx-backed ``openai`` client at most (see the module docstring)."""

# Without a key the client refuses to start; local servers (vLLM without
# --api-key, the simulator) accept any.
_NO_KEY = "EMPTY"

# The HTTP package the installed ``openai`` is built on (``httpx2`` since openai 3,
# ``httpx`` before): its ``Response`` is what ``cast_to`` must name.
_http = importlib.import_module(
    next(
        c.__module__.partition(".")[0]
        for c in openai.DefaultAsyncHttpxClient.__mro__
        if not c.__module__.startswith("openai")
    )
)
_Response: Any = _http.Response


def aiohttp_available() -> bool:
    """Whether the ``openai`` client can run on aiohttp here (its ``aiohttp`` extra)."""
    return (
        hasattr(openai, "DefaultAioHttpClient") and importlib.util.find_spec("aiohttp") is not None
    )


def resolve_transport(transport: str) -> Literal["aiohttp", "httpx"]:
    """``auto`` (or ``aiohttp``, ``httpx``) made concrete; ValueError when aiohttp is asked
    for and missing."""
    if transport == "httpx":
        return "httpx"
    if aiohttp_available():
        return "aiohttp"
    if transport == "aiohttp":
        raise ValueError(
            "http_transport='aiohttp' needs aiohttp and an openai client with "
            "DefaultAioHttpClient: pip install 'openai[aiohttp]' (or use 'auto')"
        )
    return "httpx"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client of the process.

    Each HTTP client would otherwise load the CA store itself (about 40 ms
    each, and a backend has a client per shard, role and event loop): at a
    run's start that is simulated minutes on a fast simulator clock.
    """
    return ssl.create_default_context()


def _client(
    config: OpenAIConfig,
    base_url: str | None,
    transport: Literal["aiohttp", "httpx"],
    connections: int,
) -> AsyncOpenAI:
    limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
        max_connections=connections + 8, max_keepalive_connections=connections
    )
    # User info in the URL is basic auth (as httpx reads it), given to httpx apart from
    # the URL: httpx logs every request's URL at INFO, and errors quote it.
    auth: tuple[str, str] | None = None
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None:
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
            base_url = redact_url(base_url)
    make = openai.DefaultAioHttpClient if transport == "aiohttp" else openai.DefaultAsyncHttpxClient
    return AsyncOpenAI(
        api_key=config.api_key.reveal() if config.api_key else _NO_KEY,
        base_url=base_url,
        timeout=openai.Timeout(config.timeout, connect=config.connect_timeout),
        max_retries=0,  # ours: balanced over replicas, and reported as events
        default_headers=dict(config.extra_headers) or None,
        http_client=make(limits=limits, verify=_tls_context(), auth=auth),
    )


class ClientShards:
    """One replica's ``openai`` clients: a request goes to the one with the fewest in flight.

    One client on aiohttp (its connector does not slow down with many
    connections); ``ceil(max_concurrency / SHARD_CONNECTIONS)`` on httpx.
    """

    def __init__(self, config: OpenAIConfig, base_url: str | None) -> None:
        transport = resolve_transport(config.http_transport)
        connections = config.max_concurrency
        n = 1 if transport == "aiohttp" else max(1, math.ceil(connections / SHARD_CONNECTIONS))
        per = math.ceil(connections / n)
        self.transport = transport
        self.clients = [_client(config, base_url, transport, per) for _ in range(n)]
        self.in_flight = [0] * n

    @contextmanager
    def lease(self) -> Iterator[AsyncOpenAI]:
        i = min(range(len(self.in_flight)), key=self.in_flight.__getitem__)
        self.in_flight[i] += 1
        try:
            yield self.clients[i]
        finally:
            self.in_flight[i] -= 1

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()


_OPTIONS = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})
"""Request fields that are options of the call, not fields of the body."""


async def post_chat(client: AsyncOpenAI, request: Mapping[str, Any]) -> Any:
    """POST ``request`` to ``/chat/completions``; the answer's decoded JSON.

    Not ``client.chat.completions.create(**request)``: that walks every request
    through its TypedDict transform (about 2 ms of CPU per request here) and
    every answer through pydantic. Our bodies are plain JSON values with wire
    names already, which that transform leaves as they are, so they go to the
    client's documented ``post``: same connection pool, headers, auth, timeouts
    and status errors. A body that is not JSON raises ``ValueError``.
    """
    body = {k: v for k, v in request.items() if k not in _OPTIONS}
    body.update(request.get("extra_body") or {})
    options: Any = {}  # the client's RequestOptions TypedDict is in a private module
    if request.get("extra_headers"):
        options["headers"] = request["extra_headers"]
    if request.get("extra_query"):
        options["params"] = request["extra_query"]
    if "timeout" in request:
        options["timeout"] = request["timeout"]
    response = await client.post(
        "/chat/completions", cast_to=_Response, body=body, options=options, stream=False
    )
    return json.loads(response.content)


def is_timeout(exc: BaseException) -> bool:
    """Whether the transport's own error beneath an ``openai.APITimeoutError`` is a timeout.

    The aiohttp transport maps every dropped or refused connection to a connect
    *timeout*, so the client reports it as one; the error it started from says
    what happened.
    """
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return root is exc or isinstance(root, TimeoutError) or "Timeout" in type(root).__name__
