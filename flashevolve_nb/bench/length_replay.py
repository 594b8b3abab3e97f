"""Replay the simulator's long-tailed output lengths on a real engine.

A real engine stops when its model says so; a model with random weights says
so at random. To give a real engine the same work the simulated server
gets, every request asks for a length drawn from
:mod:`flashevolve_nb.sim.lengths` (per kind of call) and sets vLLM's
``ignore_eos``, so the engine generates exactly that many tokens.

The tiny CPU engine has a short context, so lengths are multiplied by one
``scale`` for every kind: the shape of the distribution (its tail, the ratio
of task to reflection lengths) is kept and only its unit shrinks. Report
``scale`` with any figure measured this way.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flashevolve_nb.sim.lengths import (
    GENERIC_LENGTHS,
    REFLECTION_LENGTHS,
    TASK_LENGTHS,
    LengthModel,
)

__all__ = ["LengthReplay", "ReplayDraw", "model_for_kind", "scale_to_fit"]

# Repair answers are rewritten prompts, as long as reflection answers (the
# simulator draws them from the same model).
_MODELS: dict[str, LengthModel] = {
    "task": TASK_LENGTHS,
    "reflection": REFLECTION_LENGTHS,
    "repair": REFLECTION_LENGTHS,
}


def model_for_kind(kind: str) -> LengthModel:
    """The simulator's length model for a kind of call; unknown kinds are short, generic."""
    return _MODELS.get(kind, GENERIC_LENGTHS)


def scale_to_fit(max_model_len: int, *, prompt_reserve: int) -> float:
    """The largest scale at which the longest task answer plus ``prompt_reserve`` fits.

    Task answers have the longest tail (``TASK_LENGTHS.cap``), and a reflection
    prompt quotes a few of them, so the reserve has to cover that prompt.
    """
    room = max_model_len - prompt_reserve
    if room <= 0:
        raise ValueError(
            f"max_model_len {max_model_len} leaves no room after a prompt reserve of "
            f"{prompt_reserve} tokens; start the engine with a longer --max-model-len"
        )
    return min(1.0, room / TASK_LENGTHS.cap)


@dataclass(frozen=True, slots=True)
class ReplayDraw:
    """One request's replayed length."""

    kind: str
    drawn: int
    """Tokens the simulator's distribution gave, before scaling."""
    max_tokens: int
    """Tokens asked of the engine: ``drawn * scale``, at least 1."""


class LengthReplay:
    """A seeded, thread-safe source of per-request extras: ``replay(kind) -> kwargs``.

    The kwargs (``max_tokens`` and ``extra_body={"ignore_eos": True}``) go
    into the request as they are; :class:`~flashevolve_nb.llm.openai_backend.OpenAIBackend`
    and the ``openai`` client both take them. Every draw is kept in ``draws``.
    Which request gets which draw depends on the order requests are made
    in, which concurrency makes nondeterministic; the sequence of draws per
    kind is fixed by ``seed``.
    """

    def __init__(self, scale: float, *, seed: int = 0) -> None:
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale!r}")
        self.scale = scale
        self.seed = seed
        self._rngs: dict[str, random.Random] = {}
        self._lock = threading.Lock()  # gepa calls from a pool of threads
        self._draws: list[ReplayDraw] = []

    def __call__(self, kind: str) -> Mapping[str, Any]:
        draw = self.draw(kind)
        return {"max_tokens": draw.max_tokens, "extra_body": {"ignore_eos": True}}

    def draw(self, kind: str) -> ReplayDraw:
        model = model_for_kind(kind)
        with self._lock:
            rng = self._rngs.get(kind)
            if rng is None:
                # One stream per kind: how many task calls came first does not
                # change the reflection lengths.
                rng = self._rngs[kind] = random.Random(f"{self.seed}:{kind}")
            drawn = model.draw(rng)
            out = ReplayDraw(kind, drawn, max(1, round(drawn * self.scale)))
            self._draws.append(out)
        return out

    @property
    def draws(self) -> tuple[ReplayDraw, ...]:
        with self._lock:
            return tuple(self._draws)

    def counts(self) -> Counter[str]:
        return Counter(d.kind for d in self.draws)

    def cap(self, kind: str) -> int:
        """The most tokens a request of this kind can ask for."""
        return max(1, round(model_for_kind(kind).cap * self.scale))

    def __repr__(self) -> str:
        return f"LengthReplay(scale={self.scale:g}, seed={self.seed}, draws={len(self._draws)})"
