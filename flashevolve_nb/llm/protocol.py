"""The one LLM protocol every backend implements.

``chat(messages, **params) -> Completion``. Workloads only ever see this, so a
simulated backend and a real OpenAI-compatible server are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from flashevolve_nb.errors import FlashEvolveError

__all__ = [
    "LLM",
    "Completion",
    "FinishReason",
    "LLMError",
    "Message",
    "RetryListener",
    "RetryNotice",
    "Usage",
    "report_retry",
    "retry_listener",
]

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer. ``latency`` is in the run clock's (simulated) seconds."""

    text: str
    usage: Usage
    latency: float
    finish_reason: FinishReason = "stop"
    model: str = ""


class LLMError(FlashEvolveError, RuntimeError):
    """A backend could not produce an answer (after its own retries)."""


@runtime_checkable
class LLM(Protocol):
    """What a workload needs from a model server."""

    @property
    def name(self) -> str:
        """Short human name, e.g. ``"simulated vllm"`` or ``"openai:gpt-4o"``."""
        ...

    @property
    def simulated(self) -> bool:
        """True when answers come from the offline simulator."""
        ...

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryNotice:
    """A backend's attempt failed and it will try again (``LLMRetry`` events carry these)."""

    backend: str
    endpoint: str
    """Which replica failed (a base URL without credentials)."""
    attempt: int
    """The attempt that failed, from 1."""
    cause: str
    """What went wrong, e.g. ``"HTTP 429: rate limited"`` or ``"timeout after 30s"``."""
    status: int | None
    """The HTTP status, or None when no response came (timeout, dropped connection)."""
    delay: float
    """Wall seconds the backend waits before the next attempt."""


RetryListener = Callable[[RetryNotice], None]

# A context variable rather than a ``chat`` parameter: the caller (the engine's
# StageContext) learns about retries without any backend having to accept, or
# the simulator having to ignore, an extra argument.
_retry_listener: ContextVar[RetryListener | None] = ContextVar(
    "flashevolve_retry_listener", default=None
)


@contextmanager
def retry_listener(listener: RetryListener | None) -> Iterator[None]:
    """Send the retries of ``chat`` calls made inside this block to ``listener``."""
    token = _retry_listener.set(listener)
    try:
        yield
    finally:
        _retry_listener.reset(token)


def report_retry(notice: RetryNotice) -> None:
    """Called by a backend before it retries; a no-op when nobody listens."""
    listener = _retry_listener.get()
    if listener is not None:
        listener(notice)
