"""Which requests the loopback server answers badly, and how.

A client's retry logic is only as good as the failures it was tried on, so
the simulator's HTTP server can fail the ways real servers do: ``rate_limit``
(429 with ``Retry-After``), ``server_error`` (500), ``hang`` (no answer until
the client gives up), ``malformed`` (a 200 whose JSON body is cut short) and
``drop`` (the connection closes without an answer).

Scripted faults (:meth:`FaultPlan.inject`) hit the next requests in order,
for tests that need an exact sequence. Random faults follow
:class:`FaultRates`, drawn per request from (seed, the request body, how
many times that body was seen): the same run faces the same faults whatever
order concurrent requests arrive in. Faults are decided before the
simulator sees the request, so a retried request gets the answer the first
attempt would have had.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, fields
from typing import Literal, get_args

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "FaultRates", "parse_fault"]

FaultKind = Literal["rate_limit", "server_error", "hang", "malformed", "drop"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
_ALIASES: dict[str, FaultKind] = {"429": "rate_limit", "500": "server_error"}


def parse_fault(name: str) -> FaultKind:
    """A fault kind from its name or alias (``429``, ``500``)."""
    kind = _ALIASES.get(name, name)
    for k in FAULT_KINDS:
        if k == kind:
            return k
    raise ValueError(f"unknown fault {name!r}; faults: {', '.join(FAULT_KINDS)} (or 429, 500)")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRates:
    """Probability of each fault per request, and how faults behave."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    malformed: float = 0.0
    drop: float = 0.0
    retry_after: float = 0.05
    """Real seconds a 429 asks the client to wait."""
    hang_seconds: float = 30.0
    """A hung request gets no answer for this long (real seconds), unless the client
    hangs up first; make the client's timeout shorter."""
    seed: int = 0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault rate {kind}={p!r} must be in [0, 1]")
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {self.total:g}, more than 1")
        if self.retry_after < 0 or self.hang_seconds < 0:
            raise ValueError("retry_after and hang_seconds must be >= 0 seconds")

    @property
    def total(self) -> float:
        return float(sum(getattr(self, k) for k in FAULT_KINDS))

    @classmethod
    def parse(cls, spec: str, **settings: float) -> FaultRates:
        """From ``"429=0.05,500=0.02,hang=0.01"``; ``settings`` set the other fields."""
        rates: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault rate {part!r} is not NAME=PROBABILITY, e.g. 429=0.05")
            try:
                rates[parse_fault(name.strip())] = float(value)
            except ValueError as exc:
                raise ValueError(f"fault rate {part!r}: {exc}") from None
        known = {f.name for f in fields(cls)} - set(FAULT_KINDS)
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**rates, **settings)  # type: ignore[arg-type]


class FaultPlan:
    """Thread-safe: tests change it from their thread while the server runs in its own."""

    def __init__(self, rates: FaultRates | None = None) -> None:
        self._lock = threading.Lock()
        self._rates = rates or FaultRates()
        self._script: deque[FaultKind] = deque()
        self._seen: Counter[str] = Counter()
        self._injected: Counter[FaultKind] = Counter()

    @property
    def rates(self) -> FaultRates:
        return self._rates

    def set_rates(self, rates: FaultRates) -> None:
        with self._lock:
            self._rates = rates

    def inject(self, *kinds: str) -> None:
        """Fail the next ``len(kinds)`` requests with these faults, in order."""
        parsed = [parse_fault(k) for k in kinds]
        with self._lock:
            self._script.extend(parsed)

    @property
    def pending(self) -> int:
        """Scripted faults not yet served."""
        return len(self._script)

    def injected(self) -> dict[FaultKind, int]:
        """How many of each fault were served so far."""
        with self._lock:
            return dict(self._injected)

    def draw(self, body: bytes) -> FaultKind | None:
        """The fault for this request, if any."""
        with self._lock:
            if self._script:
                kind: FaultKind | None = self._script.popleft()
            else:
                kind = self._random(body)
            if kind is not None:
                self._injected[kind] += 1
            return kind

    def _random(self, body: bytes) -> FaultKind | None:
        rates = self._rates
        if rates.total <= 0:
            return None
        digest = hashlib.sha256(body).hexdigest()
        n = self._seen[digest]
        self._seen[digest] += 1
        x = random.Random(f"{rates.seed}:{digest}:{n}").random()
        for kind in FAULT_KINDS:
            x -= getattr(rates, kind)
            if x < 0:
                return kind
        return None
