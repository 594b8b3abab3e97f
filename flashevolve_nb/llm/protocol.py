"""The one LLM protocol every backend implements.

``chat(messages, **params) -> Completion``. Workloads only ever see this, so a
simulated backend and a real OpenAI-compatible server are interchangeable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["LLM", "Completion", "FinishReason", "LLMError", "Message", "Usage"]

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


class LLMError(RuntimeError):
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
