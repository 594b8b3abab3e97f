"""Latency profiles: the numbers that make a simulated server slow like a real one.

A profile is a frozen value, so a benchmark can print exactly which server it
ran against and two runs with equal profiles are comparable. Two families:

- ``VllmProfile``: one GPU server with continuous batching. Every decode step
  serves all running sequences and costs ``t0 + t1 * running``, so latency
  depends on load; a cap on running sequences makes the rest wait in line.
- ``ApiProfile``: a hosted API. Latency does not depend on load up to the
  account's concurrency cap; time to first token is heavy-tailed; optional
  per-minute limits answer with a rate-limit error.

``get_profile("vllm", t1=0.0002)`` picks one by name with overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["PROFILE_NAMES", "ApiProfile", "Profile", "VllmProfile", "get_profile"]


@dataclass(frozen=True, slots=True)
class VllmProfile:
    """Continuous batching on one GPU (times in simulated seconds)."""

    kind: ClassVar[str] = "vllm"

    t0: float = 0.012
    """Fixed cost of one decode step."""
    t1: float = 0.00012
    """Extra cost of one decode step per running sequence."""
    max_running: int = 128
    """Sequences decoded together; later requests wait FIFO."""
    prefill_per_token: float = 0.01
    """Prefill work per prompt token, in decode-step equivalents of the joining request."""

    def __post_init__(self) -> None:
        if not (self.t0 > 0 and self.t1 >= 0 and self.prefill_per_token >= 0):
            raise ValueError(f"invalid vllm profile timings: {self!r}")
        if self.max_running < 1:
            raise ValueError(f"max_running must be >= 1 (got {self.max_running!r})")

    def step_time(self, running: int) -> float:
        """Seconds one decode step takes with ``running`` sequences in the batch."""
        return self.t0 + self.t1 * running

    @property
    def capacity_tokens_per_s(self) -> float:
        """Aggregate decode throughput with a full batch."""
        return self.max_running / self.step_time(self.max_running)


@dataclass(frozen=True, slots=True)
class ApiProfile:
    """A hosted API: per-request latency, no slowdown with load (times in seconds)."""

    kind: ClassVar[str] = "api"

    ttft_median: float = 0.5
    """Median time to first token."""
    ttft_sigma: float = 0.6
    """Lognormal sigma of the time to first token (the heavy tail)."""
    tokens_per_s: float = 80.0
    """Median decode speed of one stream."""
    speed_jitter: float = 0.15
    """Lognormal sigma of the per-request decode speed."""
    max_concurrency: int = 256
    """Requests served at once on the account; later ones wait FIFO."""
    rpm_limit: int | None = None
    """Requests per minute before the API answers with a rate-limit error."""
    tpm_limit: int | None = None
    """Tokens (prompt + output) per minute before a rate-limit error."""

    def __post_init__(self) -> None:
        if not (self.ttft_median > 0 and self.ttft_sigma >= 0 and self.tokens_per_s > 0):
            raise ValueError(f"invalid api profile timings: {self!r}")
        if self.speed_jitter < 0 or self.max_concurrency < 1:
            raise ValueError(f"invalid api profile limits: {self!r}")
        for limit in (self.rpm_limit, self.tpm_limit):
            if limit is not None and limit < 1:
                raise ValueError(f"rate limits must be >= 1 or None: {self!r}")

    @property
    def capacity_tokens_per_s(self) -> float:
        """Aggregate decode throughput with every concurrency slot busy."""
        return self.max_concurrency * self.tokens_per_s


Profile = VllmProfile | ApiProfile

_PROFILES: dict[str, type[VllmProfile] | type[ApiProfile]] = {
    "vllm": VllmProfile,
    "api": ApiProfile,
}
PROFILE_NAMES: tuple[str, ...] = tuple(_PROFILES)


def get_profile(name: str, **overrides: Any) -> Profile:
    """The profile called ``name`` with some fields overridden."""
    try:
        cls = _PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; valid names: {', '.join(PROFILE_NAMES)}"
        ) from None
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} for profile {name!r}; "
            f"valid fields: {', '.join(fields)}"
        )
    return cls(**overrides)
