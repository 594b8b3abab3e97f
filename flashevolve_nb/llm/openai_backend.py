"""The ``LLM`` protocol over any OpenAI-compatible server, on the official ``openai`` client.

One :class:`OpenAIBackend` talks to one model behind one or several base URLs
(vLLM replicas, an API). It adds what a long evolution run needs and the bare
client does not give in one place:

- balancing over replicas (least outstanding requests; a failing replica
  rests and is tried again later), with a concurrency cap per replica;
- retries with exponential backoff and jitter on 429, 408/409, 5xx,
  timeouts, dropped connections and malformed answers, honouring
  ``Retry-After``; none on other 4xx, which would fail the same way again.
  Each retry is reported (see :func:`~flashevolve_nb.llm.protocol.report_retry`),
  so inside a run it becomes an ``LLMRetry`` event;
- token accounting from the server's ``usage``, and cost when prices are set;
- pass-through of anything the ``openai`` client does not know (vLLM's
  ``chat_template_kwargs``, ``ignore_eos``, ``top_k``...) in ``extra_body``.

The HTTP beneath the client (aiohttp or httpx) and how answers are read are
:mod:`flashevolve_nb.llm.transport`'s: the client's CPU per request is what
bounds a run against a fast simulator clock.

Errors::

    LLMError (flashevolve_nb.llm.protocol)
     └── BackendError   no answer after the retries, or one that retrying cannot
                        fix (401, 404, 400); names the backend, the replica and
                        the cause

The key is a :class:`~flashevolve_nb.llm.secret.Secret`: it reaches the HTTP
client and nothing else, and is scrubbed from every error message.

The ``openai`` client and its connection pool belong to one event loop, so
the backend keeps one set of clients per loop it is used from (a notebook's
own loop and a run's background loop can share one backend).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import openai

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.balancer import Balancer, Replica, ReplicaStats
from flashevolve_nb.llm.config import OpenAIConfig
from flashevolve_nb.llm.protocol import (
    Completion,
    FinishReason,
    LLMError,
    Message,
    RetryListener,
    RetryNotice,
    Usage,
    report_retry,
)
from flashevolve_nb.llm.retry import Failure, parse_retry_after
from flashevolve_nb.llm.secret import Secret, redact_url
from flashevolve_nb.llm.transport import ClientShards, is_timeout, post_chat

__all__ = ["BackendError", "BackendStats", "OpenAIBackend", "from_model_string"]

_DETAIL_CHARS = 300
SIMULATOR_FINGERPRINT = "flashevolve-simulator"
"""The ``system_fingerprint`` of flashevolve's loopback simulator server."""
# Request fields the client sends itself; everything else a caller passes goes
# in the body as-is (how vLLM's extras reach the server).
_CONTROL = frozenset({"messages", "model", "extra_body", "extra_headers", "extra_query", "timeout"})


class BackendError(LLMError):
    """An OpenAI-compatible backend gave no answer; ``cause`` says why, ``status`` the HTTP code."""

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        endpoint: str,
        cause: str,
        status: int | None,
        attempts: int,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.endpoint = endpoint
        self.cause = cause
        self.status = status
        self.attempts = attempts


class MalformedResponse(Exception):
    """The server answered 200 with something that is not a chat completion."""


@dataclass(frozen=True, slots=True)
class BackendStats:
    """What one backend did so far (all loops it was used from)."""

    name: str
    calls: int
    """Calls answered."""
    failed_calls: int
    """Calls that raised (:class:`BackendError`, or a bad argument the client refused)."""
    attempts: int
    retries: int
    in_flight: int
    prompt_tokens: int
    completion_tokens: int
    calls_without_usage: int
    """Answers whose server reported no ``usage`` (their tokens are not counted)."""
    cost: float | None
    """Spent so far at the configured prices; None when no price is set."""
    replicas: tuple[ReplicaStats, ...]


class _LoopClients:
    """The clients and the balancer of one event loop."""

    def __init__(self, config: OpenAIConfig) -> None:
        endpoints: Sequence[str | None] = config.endpoints or (None,)
        self.balancer: Balancer[ClientShards] = Balancer(
            [
                Replica(redact_url(url) if url else "(openai default)",
                        ClientShards(config, url), config.max_concurrency)
                for url in endpoints
            ],
            cooldown=config.cooldown,
        )  # fmt: skip

    async def aclose(self) -> None:
        for r in self.balancer.replicas:
            await r.client.aclose()


class OpenAIBackend:
    """An OpenAI-compatible model server as an ``LLM``.

    ``OpenAIBackend(model="m", base_url="http://127.0.0.1:8000/v1")`` or
    ``OpenAIBackend(config)``; keyword arguments change fields of ``config``.
    ``clock``: report latencies on a run clock (a loopback simulator server at
    ``time_scale`` x); by default they are wall seconds. ``on_retry`` hears
    every retry in addition to whoever listens through
    :func:`~flashevolve_nb.llm.protocol.retry_listener`. ``request_extra``:
    called once per ``chat`` for request fields of that call only (e.g. a
    ``max_tokens`` drawn per request by a benchmark); they override
    ``config.params`` and yield to the call's own ``params``.
    """

    def __init__(
        self,
        config: OpenAIConfig | None = None,
        *,
        clock: Clock | None = None,
        on_retry: RetryListener | None = None,
        seed: int | None = None,
        request_extra: Callable[[], Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> None:
        if config is None:
            config = OpenAIConfig(**fields)
        elif fields:
            config = replace(config, **fields)
        self.config = config
        self.clock = clock
        self._on_retry = on_retry
        self._request_extra = request_extra
        self._rng = random.Random(seed)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
            weakref.WeakKeyDictionary()
        )
        self._known_params = _create_params()
        self._calls = self._failed = self._attempts = self._retries = self._in_flight = 0
        self._prompt_tokens = self._completion_tokens = self._no_usage = 0
        self._simulated = False

    # ---- LLM protocol ------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.display_name

    @property
    def simulated(self) -> bool:
        """True once an answer came from flashevolve's simulator server: results say so."""
        return self._simulated

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        """One answer; ``params`` are request fields (unknown ones go in the body as-is).

        The latency is the caller's: waiting for a slot, every attempt and every
        backoff included, in wall seconds (or on ``clock``).
        """
        if self._request_extra is not None:
            params = {**self._request_extra(), **params}
        request = self._request(messages, params)
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._in_flight += 1
        try:
            text, finish, usage, model, fingerprint = await self._with_retries(loop, request)
        finally:
            self._in_flight -= 1
        self._calls += 1
        if fingerprint == SIMULATOR_FINGERPRINT:
            self._simulated = True
        if usage is None:
            self._no_usage += 1
            usage = Usage()
        self._prompt_tokens += usage.prompt_tokens
        self._completion_tokens += usage.completion_tokens
        latency = loop.time() - started
        if self.clock is not None:
            latency *= self.clock.time_scale
        return Completion(text, usage, latency, finish, model or str(request["model"]))

    async def _with_retries(
        self, loop: asyncio.AbstractEventLoop, request: dict[str, Any]
    ) -> tuple[str, FinishReason, Usage | None, str, str]:
        balancer = self._clients(loop).balancer
        policy = self.config.retry
        last: Replica[ClientShards] | None = None
        attempt = 0
        while True:
            attempt += 1
            replica = await balancer.acquire(avoid=last)
            self._attempts += 1
            error: BackendError | None = None
            failure: Failure | None = None
            delay = 0.0
            try:
                with replica.client.lease() as client:
                    raw = await post_chat(client, request)
                parsed = _parse(raw)
            except asyncio.CancelledError:
                balancer.release(replica, ok=None)
                raise
            except Exception as exc:
                failure = self._classify(exc)
                if failure is None:  # not the server's doing: a bug or a bad argument
                    balancer.release(replica, ok=None)
                    self._failed += 1
                    raise
                # A 429 says the replica is busy, not broken: rest it without a strike.
                health = None if failure.status == 429 else not failure.replica_fault
                balancer.release(replica, ok=health, rest=failure.retry_after)
                retry_after = failure.retry_after
                if (
                    not failure.retryable
                    or attempt > policy.max_retries
                    or (retry_after is not None and retry_after > policy.max_retry_after)
                ):
                    self._failed += 1
                    error = self._error(replica, failure, attempt)
                else:
                    delay = policy.delay(attempt, self._rng, retry_after)
                    self._retries += 1
                    self._report(replica, failure, attempt, delay)
                    last = replica if failure.replica_fault else None
            if error is not None:
                # Raised out here, so that nothing is chained to it, not even as the
                # suppressed context: the client's exception may quote what the server
                # said about a key; ours is scrubbed and names the cause.
                raise error
            if failure is not None:
                await asyncio.sleep(delay)
                continue
            balancer.release(replica, ok=True)
            return parsed

    # ---- lifecycle and inspection -----------------------------------------
    async def aclose(self) -> None:
        """Close the connections of the current loop's clients."""
        clients = self._loops.pop(asyncio.get_running_loop(), None)
        if clients is not None:
            await clients.aclose()

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> BackendStats:
        replicas: tuple[ReplicaStats, ...] = ()
        for clients in list(self._loops.values()):
            replicas += clients.balancer.stats()
        cost = None
        if self.config.tracks_cost:
            cost = (
                self._prompt_tokens * self.config.cost_per_prompt_token
                + self._completion_tokens * self.config.cost_per_completion_token
            )
        return BackendStats(
            name=self.name,
            calls=self._calls,
            failed_calls=self._failed,
            attempts=self._attempts,
            retries=self._retries,
            in_flight=self._in_flight,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            calls_without_usage=self._no_usage,
            cost=cost,
            replicas=replicas,
        )

    def __repr__(self) -> str:
        urls = ", ".join(redact_url(u) for u in self.config.endpoints) or "(openai default)"
        return f"OpenAIBackend({self.name!r}, model={self.config.model!r}, base_url=[{urls}])"

    # ---- internals -----------------------------------------------------------
    def _clients(self, loop: asyncio.AbstractEventLoop) -> _LoopClients:
        clients = self._loops.get(loop)
        if clients is None:
            clients = self._loops[loop] = _LoopClients(self.config)
        return clients

    def _request(self, messages: Sequence[Message], params: Mapping[str, Any]) -> dict[str, Any]:
        merged = {**self.config.params, **params}
        if merged.pop("stream", False):
            raise ValueError("stream=True is not supported: the backend returns whole answers")
        if merged.get("n", 1) != 1:
            raise ValueError(f"n must be 1: one call gives one completion (got {merged['n']!r})")
        extra_body = {**self.config.extra_body, **dict(merged.pop("extra_body", None) or {})}
        for key in [k for k in merged if k not in self._known_params and k not in _CONTROL]:
            extra_body[key] = merged.pop(key)
        request: dict[str, Any] = {
            "model": merged.pop("model", self.config.model),
            "messages": [dict(m) for m in messages],
            **merged,
        }
        if extra_body:
            request["extra_body"] = extra_body
        return request

    def _classify(self, exc: Exception) -> Failure | None:
        scrub = self.config.scrub
        if isinstance(exc, openai.APITimeoutError) and is_timeout(exc):
            return Failure(cause=f"timeout: no answer within {self.config.timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            inner = exc.__cause__
            while inner is not None and inner.__cause__ is not None:
                inner = inner.__cause__  # the transport's own error, not its translation
            detail = f"{type(inner).__name__}: {inner}" if inner else str(exc)
            return Failure(cause=scrub(f"connection error ({detail})"[:_DETAIL_CHARS]))
        if isinstance(exc, openai.APIStatusError):
            return Failure.from_status(
                exc.status_code,
                scrub(_status_detail(exc))[:_DETAIL_CHARS],
                parse_retry_after(exc.response.headers),
            )
        if isinstance(exc, (MalformedResponse, ValueError, openai.APIResponseValidationError)):
            # json.JSONDecodeError is a ValueError: a truncated or garbled body.
            return Failure(cause=scrub(f"malformed answer: {exc}")[:_DETAIL_CHARS])
        return None

    def _error(
        self, replica: Replica[ClientShards], failure: Failure, attempts: int
    ) -> BackendError:
        hint = ""
        if failure.status in (401, 403):
            hint = "; check the API key (api_key, OPENAI_API_KEY or api_key_env)"
        elif failure.status == 404:
            hint = f"; check the model name ({self.config.model!r}) and the base URL"
        elif failure.status is not None and 400 <= failure.status < 500 and not failure.retryable:
            hint = "; the server refused the request itself, so it was not retried"
        elif failure.retryable:
            hint = f"; gave up after {attempts} attempt(s)"
            ra = failure.retry_after
            if ra is not None and ra > self.config.retry.max_retry_after:
                hint = (
                    f"; the server asked to wait {ra:g}s, more than retry.max_retry_after="
                    f"{self.config.retry.max_retry_after:g}s"
                )
        message = f"{self.name} at {replica.endpoint}: {failure.cause}{hint}"
        return BackendError(
            message,
            backend=self.name,
            endpoint=replica.endpoint,
            cause=failure.cause,
            status=failure.status,
            attempts=attempts,
        )

    def _report(
        self, replica: Replica[ClientShards], failure: Failure, attempt: int, delay: float
    ) -> None:
        notice = RetryNotice(
            backend=self.name,
            endpoint=replica.endpoint,
            attempt=attempt,
            cause=failure.cause,
            status=failure.status,
            delay=delay,
        )
        report_retry(notice)
        if self._on_retry is not None:
            self._on_retry(notice)


def from_model_string(
    model: str, *, env: Mapping[str, str] | None = None, **fields: Any
) -> OpenAIBackend:
    """A backend from ``[openai/|hosted_vllm/]MODEL[@BASE_URL[,BASE_URL...]]``.

    LiteLLM-style prefixes are dropped. Without ``@BASE_URL``, ``OPENAI_BASE_URL``
    (or the client's default); the key from ``OPENAI_API_KEY``. ``fields`` set
    any other :class:`OpenAIConfig` field.
    """
    env = os.environ if env is None else env
    name, _, urls = model.partition("@")
    for prefix in ("openai/", "hosted_vllm/"):
        name = name.removeprefix(prefix)
    if not name:
        raise ValueError(f"no model name in {model!r}; e.g. 'openai/gpt-4o-mini' or 'm@http://...'")
    fields.setdefault("base_url", urls or env.get("OPENAI_BASE_URL", ""))
    if "api_key" not in fields:
        fields["api_key"] = Secret.from_env("OPENAI_API_KEY", env)
    return OpenAIBackend(model=name, **fields)


def _create_params() -> frozenset[str]:
    """The request fields this version of the ``openai`` client accepts by name."""
    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self"}


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return exc.message


def _parse(raw: Any) -> tuple[str, FinishReason, Usage | None, str, str]:
    """Text, finish reason, usage, model and system fingerprint of a chat completion's
    decoded JSON, or MalformedResponse."""
    choices = raw.get("choices") if isinstance(raw, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        shown = raw if isinstance(raw, str) else type(raw).__name__
        raise MalformedResponse(f"not a chat completion with choices: {str(shown)[:120]!r}")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if content is not None and not isinstance(content, str):
        raise MalformedResponse(f"message content is {type(content).__name__}, not text")
    reason = choice.get("finish_reason")
    finish: FinishReason = "length" if reason == "length" else "stop"
    if reason == "content_filter":
        finish = "error"
    usage = None
    u = raw.get("usage")
    if u is not None:
        try:
            usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
        except (TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(f"usage is not token counts: {exc}") from exc
    model = str(raw.get("model") or "")
    return content or "", finish, usage, model, str(raw.get("system_fingerprint") or "")
