"""Long-tailed output lengths, per kind of call.

Why the tail matters: inside a synchronous stage every request waits for the
slowest one, and the slowest one is a draw from the tail. The paper measured
GEPA's evaluation outputs at ~700 tokens on average with a tail reaching
6,000-7,000, so task answers here are a lognormal *mixture*: most answers are
a few hundred tokens, about one in ten rambles into thousands. Reflection
answers are about as long on average but with a shorter tail; anything else
is short. The reported usage is the drawn length; the visible text of a
simulated answer may well be shorter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GENERIC_LENGTHS",
    "REFLECTION_LENGTHS",
    "TASK_LENGTHS",
    "CallKind",
    "LengthModel",
    "lengths_for",
]

CallKind = Literal["task", "reflection", "generic"]


@dataclass(frozen=True, slots=True)
class LengthModel:
    """A lognormal mixture of output lengths, clipped to ``[floor, cap]`` tokens."""

    components: tuple[tuple[float, float, float], ...]
    """``(weight, median, sigma)`` of each lognormal component."""
    cap: int
    floor: int = 1

    def __post_init__(self) -> None:
        if not self.components or any(w <= 0 or m <= 0 or s < 0 for w, m, s in self.components):
            raise ValueError(f"invalid length components: {self.components!r}")
        if not 1 <= self.floor <= self.cap:
            raise ValueError(f"need 1 <= floor <= cap (got {self.floor}, {self.cap})")

    def draw(self, rng: random.Random) -> int:
        total = sum(w for w, _, _ in self.components)
        pick = rng.random() * total
        chosen = self.components[-1]
        for component in self.components:
            pick -= component[0]
            if pick <= 0:
                chosen = component
                break
        _, median, sigma = chosen
        value = rng.lognormvariate(math.log(median), sigma)
        return max(self.floor, min(self.cap, round(value)))

    @property
    def approx_mean(self) -> float:
        """Mean of the unclipped mixture (the cap trims a little off)."""
        total = sum(w for w, _, _ in self.components)
        return sum(w * m * math.exp(s * s / 2) for w, m, s in self.components) / total


TASK_LENGTHS = LengthModel(components=((0.9, 400.0, 0.6), (0.1, 2700.0, 0.5)), cap=7000, floor=8)
"""Mean ~740, median ~440, p99 ~5,000, about 1% past 5,000, never past 7,000."""

REFLECTION_LENGTHS = LengthModel(components=((1.0, 700.0, 0.5),), cap=3000, floor=40)
"""Mean ~790, p99 ~2,200."""

GENERIC_LENGTHS = LengthModel(components=((1.0, 150.0, 0.7),), cap=2000, floor=4)
"""Mean ~190."""

_BY_KIND: dict[str, LengthModel] = {
    "task": TASK_LENGTHS,
    "reflection": REFLECTION_LENGTHS,
    "generic": GENERIC_LENGTHS,
}


def lengths_for(kind: CallKind) -> LengthModel:
    return _BY_KIND[kind]
