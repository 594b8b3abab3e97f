"""Parent selection strategies over the pool.

``pareto`` follows GEPA: drop artifacts whose every instance front is also
covered by some other surviving artifact (tried from the weakest up), then
sample in proportion to how many instance fronts each survivor sits on. It
favours artifacts that are the best at *something*, not only on average. A
pool with extra objectives adds its objective front (mean score against,
say, context tokens): each member gets one more share.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from flashevolve_nb.engine.pool import Pool, PoolEntry

__all__ = [
    "CurrentBest",
    "EpsilonGreedy",
    "ParentSelector",
    "ParetoSelector",
    "make_selector",
    "nondominated_front",
]


class ParentSelector(Protocol):
    @property
    def name(self) -> str: ...

    def select(self, pool: Pool, rng: random.Random) -> PoolEntry: ...


def nondominated_front(pool: Pool) -> dict[str, int]:
    """Ids of non-redundant front members -> number of instance fronts they are on,
    plus one for being on the pool's objective front (when it declares objectives)."""
    fronts = [f for f in pool.fronts() if f]
    survivors = set().union(*fronts) if fronts else set()
    # Weakest first, so that among mutually redundant artifacts the strongest stays; equal
    # scores in admission order (ids sorted as text would put "a10" before "a9"). gepa's
    # tie order is that of its int sets, i.e. of hashing: which of two artifacts with the
    # same scores everywhere survives is arbitrary there.
    admitted = {e.artifact.id: k for k, e in enumerate(pool)}
    for candidate in sorted(survivors, key=lambda i: (pool.entry(i).score, admitted[i])):
        others = survivors - {candidate}
        if others and all(f & others for f in fronts if candidate in f):
            survivors = others
    counts: Counter[str] = Counter()
    for f in fronts:
        for i in f & survivors:
            counts[i] += 1
    # A trade-off (cheaper, a little less accurate) is best on no instance, yet worth
    # building on: every member of the objective front earns one share.
    for i in pool.objective_front():
        counts[i] += 1
    return dict(counts)


@dataclass(frozen=True)
class ParetoSelector:
    name: str = "pareto"

    def select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        counts = nondominated_front(pool)
        if not counts:
            return pool.best()
        # Admission order gives a deterministic sampling list for a given seed.
        order = [e.artifact.id for e in pool if e.artifact.id in counts]
        weights = [counts[i] for i in order]
        return pool.entry(rng.choices(order, weights=weights, k=1)[0])


@dataclass(frozen=True)
class CurrentBest:
    name: str = "current_best"

    def select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        return pool.best()


@dataclass(frozen=True)
class EpsilonGreedy:
    epsilon: float = 0.1
    name: str = "epsilon_greedy"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be within [0, 1] (got {self.epsilon})")

    def select(self, pool: Pool, rng: random.Random) -> PoolEntry:
        if rng.random() < self.epsilon:
            return rng.choice(list(pool))
        return pool.best()


def make_selector(name: str | ParentSelector) -> ParentSelector:
    """A selector from its name: ``pareto``, ``current_best``, ``epsilon_greedy[:eps]``."""
    if not isinstance(name, str):
        return name
    key, _, arg = name.partition(":")
    if key == "pareto":
        return ParetoSelector()
    if key == "current_best":
        return CurrentBest()
    if key == "epsilon_greedy":
        return EpsilonGreedy(float(arg)) if arg else EpsilonGreedy()
    raise ValueError(
        f"unknown candidate selection {name!r}; use 'pareto', 'current_best' or "
        "'epsilon_greedy[:EPS]'"
    )
