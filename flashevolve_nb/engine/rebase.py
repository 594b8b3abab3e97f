"""The ``rebase`` staleness policy: re-apply a stale change onto the newest artifact.

Why a policy of its own: when a workload's proposals are *changes* (ACE's
playbook deltas) rather than whole texts, a stale proposal is not wrong, only
aimed at an old base. Deltas mostly commute, so re-applying one to the newest
artifact keeps the work without losing what was admitted meanwhile; the
rebased item is anchored to the current version and validated before
admission, like a reflective patch. Unlike ``reflective`` it needs no model.

The policy knows nothing of any one workload: it asks the workload through
the :class:`~flashevolve_nb.engine.workload.Rebasing` capability, and a
workload without one fails the item with a message saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.staleness import Decision
from flashevolve_nb.engine.workload import Rebasing

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["RebasePolicy"]


@dataclass(frozen=True)
class RebasePolicy:
    """Stale changes are re-applied onto the newest artifact by the workload."""

    name: str = "rebase"

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        workload = ctx.workload
        if not isinstance(workload, Rebasing):
            raise TypeError(
                f"the rebase policy needs a workload that can rebase a change; "
                f"{workload.name!r} has no rebase() (see flashevolve_nb.engine.workload."
                "Rebasing); choose another policy, e.g. 'guarded' or 'reflective'"
            )
        return workload.rebase(item, staleness, ctx)
