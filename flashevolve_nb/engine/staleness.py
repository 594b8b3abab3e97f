"""Staleness policies: what to do with work derived from an older pool.

An item's staleness is ``pool.version - item.base_version`` at the moment of a
decision. The pipeline asks the run's policy at its decision points (by
default before validation and before admission) whenever an item is stale.
Policies are chosen by name and may be swapped while a run goes on.

Only ``accept`` exists yet; ``guarded``, ``discard``, ``reflective`` and
``meta`` plug into the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from flashevolve_nb.engine.items import WorkItem

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["AcceptPolicy", "Decision", "StalenessPolicy", "make_policy", "policy_names"]

Action = Literal["accept", "patch", "discard"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    replacement: WorkItem | None = None
    """For ``patch``: the repaired item that continues instead of the stale one."""
    tokens: int = 0
    """Tokens spent outside ``ctx.chat`` (calls through ``ctx.chat`` are counted already)."""


class StalenessPolicy(Protocol):
    @property
    def name(self) -> str: ...

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        """Decide about a stale ``item`` at ``point``.

        ``ctx.pool`` is the pool as it is now (``ctx.pool.since(item.base_version)``
        is what the item missed); LLM calls go through ``ctx.chat`` so that they
        are recorded and their tokens counted.
        """
        ...


@dataclass(frozen=True)
class AcceptPolicy:
    """Full asynchrony: stale work is used as it is."""

    name: str = "accept"

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        return Decision("accept", f"accept policy: used as is at staleness {staleness}")


_POLICIES = {"accept": AcceptPolicy}


def policy_names() -> tuple[str, ...]:
    return tuple(_POLICIES)


def make_policy(name: str | StalenessPolicy) -> StalenessPolicy:
    if not isinstance(name, str):
        return name
    try:
        return _POLICIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown staleness policy {name!r}; available: {', '.join(_POLICIES)}"
        ) from None
