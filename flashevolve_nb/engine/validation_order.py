"""The order in which validation instances are scored: most discriminative first.

Speculative validation judges a candidate on the first part of its validation
to come back. That prefix only predicts the full score if it is made of the
instances where candidates actually differ: an instance every candidate gets
right, or every candidate gets equally wrong, costs a request and tells the
judge nothing. So instances are ordered by how much recent candidates'
scores on them spread, and an instance that the last few candidates all
passed rotates to the back (it is still scored, last).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

__all__ = ["DiscriminativeOrder"]


class DiscriminativeOrder:
    """Indices of ``n`` validation instances, most discriminative first.

    ``observe`` every full validation (one score per instance, in instance
    order); ``order`` is then computed from the last ``window`` of them.
    """

    def __init__(
        self, n: int, *, window: int = 20, rotate_after: int = 3, pass_score: float = 1.0
    ) -> None:
        if n < 1:
            raise ValueError(f"need at least one validation instance (got {n})")
        if window < 2:
            raise ValueError(f"window must be >= 2 to measure a spread (got {window})")
        if rotate_after < 1:
            raise ValueError(f"rotate_after must be >= 1 (got {rotate_after})")
        self.n = n
        self.rotate_after = rotate_after
        self.pass_score = pass_score
        self._recent: deque[tuple[float, ...]] = deque(maxlen=window)

    def observe(self, scores: Sequence[float]) -> None:
        if len(scores) != self.n:
            raise ValueError(f"expected {self.n} scores, got {len(scores)}")
        self._recent.append(tuple(float(s) for s in scores))

    def spread(self) -> tuple[float, ...]:
        """Per instance: the standard deviation of recent candidates' scores (0 before two)."""
        if len(self._recent) < 2:
            return (0.0,) * self.n
        return tuple(statistics.pstdev(col) for col in zip(*self._recent, strict=True))

    def rotated(self) -> frozenset[int]:
        """Instances the last ``rotate_after`` candidates all passed."""
        if len(self._recent) < self.rotate_after:
            return frozenset()
        last = list(self._recent)[-self.rotate_after :]
        return frozenset(i for i in range(self.n) if all(row[i] >= self.pass_score for row in last))

    def order(self) -> tuple[int, ...]:
        spread = self.spread()
        out = self.rotated()
        # Ties keep the original order, so an order with no evidence is the identity.
        return tuple(sorted(range(self.n), key=lambda i: (i in out, -spread[i], i)))
