"""When and how long to wait before trying a failed LLM request again.

Vendor-neutral: a backend turns what went wrong into a :class:`Failure`
(retryable or not, whether the replica is to blame, what the server asked us
to wait) and asks :class:`RetryPolicy` for the delay. Exponential backoff
with jitter spreads the retries of many concurrent requests over time, so a
server that just recovered is not hit by all of them at once; a server's
``Retry-After`` is a floor, never shortened.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Failure", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides every 5xx: timeouts, conflicts and rate limits may pass on a later try."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """What went wrong with one attempt."""

    cause: str
    status: int | None = None
    retryable: bool = True
    replica_fault: bool = True
    """The replica itself misbehaved (5xx, timeout, dropped connection, bad body), so
    the balancer rests it for a while. A 429 is not a fault: the replica is busy."""
    retry_after: float | None = None
    """Seconds the server asked us to wait, if it said."""

    @staticmethod
    def from_status(status: int, detail: str, retry_after: float | None = None) -> Failure:
        retryable = status in RETRYABLE_STATUS or status >= 500
        return Failure(
            cause=f"HTTP {status}: {detail}" if detail else f"HTTP {status}",
            status=status,
            retryable=retryable,
            replica_fault=status >= 500,
            retry_after=retry_after,
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    The n-th retry waits ``min(max_backoff, backoff * multiplier**(n-1))``,
    shortened by a random fraction up to ``jitter`` (1.0 is "full jitter"),
    and never less than what the server asked for.
    """

    max_retries: int = 5
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    """A server that asks for a longer wait than this gets no retry: the error says so."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 (got {self.max_retries})")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0 seconds")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1 (got {self.multiplier})")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1] (got {self.jitter})")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (from 1)."""
        base = min(self.max_backoff, self.backoff * self.multiplier ** max(0, retry - 1))
        wait = base * (1.0 - self.jitter * rng.random())
        if retry_after is not None and retry_after > 0:
            # A little spread on top, so clients told the same time do not return together.
            wait = max(wait, retry_after * (1.0 + 0.1 * rng.random()))
        return wait


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lower.get(name)
        if raw is None:
            continue
        seconds: float | None
        try:
            seconds = float(raw) / scale
        except ValueError:
            seconds = _from_http_date(raw, now)
        if seconds is not None and math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _from_http_date(raw: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()
