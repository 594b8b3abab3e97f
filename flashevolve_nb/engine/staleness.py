"""Staleness policies: what to do with work derived from an older pool.

An item's staleness is ``pool.version - item.base_version`` at the moment of a
decision. The pipeline asks the run's policy at its decision points (by
default before validation and before admission) whenever an item is stale.
Policies are chosen by name and may be swapped while a run goes on.

The simple policies live here; the LLM-backed ones (``reflective`` and
``meta``) live in :mod:`flashevolve_nb.repair` and are loaded on demand, so the
engine itself never builds a prompt. ``rebase`` (:mod:`flashevolve_nb.engine.rebase`)
asks a workload that can re-apply a stale change onto the newest artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from flashevolve_nb.engine.items import WorkItem

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext
    from flashevolve_nb.engine.pool import Pool

__all__ = [
    "AcceptPolicy",
    "Decision",
    "DiscardPolicy",
    "GuardedPolicy",
    "ImprovementHook",
    "StalenessPolicy",
    "make_policy",
    "policy_names",
]

Action = Literal["accept", "patch", "discard", "defer"]
ACTIONS: tuple[Action, ...] = ("accept", "patch", "discard", "defer")


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    replacement: WorkItem | None = None
    """For ``patch``: the repaired item that continues instead of the stale one."""
    tokens: int = 0
    """Tokens spent outside ``ctx.chat`` (calls through ``ctx.chat`` are counted already)."""
    history_ids: tuple[str, ...] = ()
    """What the decision looked at: the artifacts admitted since the item's base version."""
    request: str = ""
    answer: str = ""


@runtime_checkable
class StalenessPolicy(Protocol):
    @property
    def name(self) -> str: ...

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        """Decide about a stale ``item`` at ``point``.

        ``ctx.pool`` is the pool as it is now (``ctx.pool.since(item.base_version)``
        is what the item missed); LLM calls go through ``ctx.chat`` so that they
        are recorded and their tokens counted. ``defer`` takes the item out of
        the pipeline into the policy's own keeping (see :class:`ImprovementHook`).
        """
        ...


@runtime_checkable
class ImprovementHook(Protocol):
    """A policy that acts after the pool's best improves (``meta`` distils then).

    ``take_groups`` hands over what is ready (sync, so that the pipeline can open
    a step per group at once); ``distil`` turns one group into a decision whose
    ``patch`` replacement re-enters the pipeline for validation.
    """

    def take_groups(self, pool: Pool) -> Sequence[Sequence[WorkItem]]: ...

    async def distil(self, group: Sequence[WorkItem], ctx: StageContext) -> Decision: ...


@dataclass(frozen=True)
class AcceptPolicy:
    """Full asynchrony: stale work is used as it is."""

    name: str = "accept"

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        return Decision(
            "accept",
            f"accept policy: used as is at staleness {staleness}",
            history_ids=_history_ids(item, ctx),
        )


@dataclass(frozen=True)
class GuardedPolicy:
    """Accept mildly stale work, discard the rest (the paper's guarded async)."""

    delta_max: int = 2
    name: str = field(default="guarded", init=False)

    def __post_init__(self) -> None:
        if self.delta_max < 0:
            raise ValueError(f"guarded: delta_max must be >= 0 (got {self.delta_max})")

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        seen = _history_ids(item, ctx)
        if staleness <= self.delta_max:
            return Decision(
                "accept", f"staleness {staleness} <= delta_max {self.delta_max}", history_ids=seen
            )
        return Decision(
            "discard", f"staleness {staleness} > delta_max {self.delta_max}", history_ids=seen
        )


@dataclass(frozen=True)
class DiscardPolicy:
    """Any staleness at all discards the item: only fully fresh work counts."""

    name: str = "discard"

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        return Decision(
            "discard", f"stale by {staleness} version(s)", history_ids=_history_ids(item, ctx)
        )


def _history_ids(item: WorkItem, ctx: StageContext) -> tuple[str, ...]:
    return tuple(e.artifact.id for e in ctx.pool.since(item.base_version))


def _reflective(**kw: Any) -> StalenessPolicy:
    from flashevolve_nb.repair.reflective import ReflectivePolicy

    return ReflectivePolicy(**kw)


def _meta(**kw: Any) -> StalenessPolicy:
    from flashevolve_nb.repair.meta import MetaPolicy

    return MetaPolicy(**kw)


def _rebase(**kw: Any) -> StalenessPolicy:
    from flashevolve_nb.engine.rebase import RebasePolicy

    return RebasePolicy(**kw)


_POLICIES: dict[str, Any] = {
    "accept": AcceptPolicy,
    "guarded": GuardedPolicy,
    "discard": DiscardPolicy,
    "reflective": _reflective,
    "meta": _meta,
    "rebase": _rebase,
}

_SHORTHAND = {"guarded": "delta_max", "meta": "group_size"}


def policy_names() -> tuple[str, ...]:
    return tuple(_POLICIES)


def make_policy(name: str | StalenessPolicy, **params: Any) -> StalenessPolicy:
    """A policy by name (``"guarded"``, ``"guarded:3"`` for delta_max 3...) or as given.

    ``params`` go to the policy's constructor, e.g. ``make_policy("guarded",
    delta_max=1)`` or ``make_policy("reflective", llm=my_repair_backend)``.
    """
    if not isinstance(name, str):
        if params:
            raise ValueError("parameters only go with a policy given by name")
        return name
    base, _, arg = name.partition(":")
    factory = _POLICIES.get(base.strip())
    if factory is None:
        raise ValueError(f"unknown staleness policy {name!r}; available: {', '.join(_POLICIES)}")
    if arg:
        key = _SHORTHAND.get(base)
        if key is None:
            raise ValueError(f"policy {base!r} takes no ':' argument (got {name!r})")
        try:
            params[key] = int(arg)
        except ValueError:
            raise ValueError(
                f"{base}:{arg}: the number after ':' ({key}) must be an integer"
            ) from None
    try:
        policy: StalenessPolicy = factory(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for staleness policy {base!r}: {exc}") from None
    return policy
