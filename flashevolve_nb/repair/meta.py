"""The ``meta`` policy: hold stale proposals, distil them after the next real improvement.

Stale proposals are deferred (taken out of the pipeline) into a bounded
buffer. When the pool's best improves, the buffer is split into groups
(default 4) and each group is shown to the repair LLM at once, which folds the
transferable ideas of the group into the new best; the result goes through
validation like any patch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.staleness import Decision
from flashevolve_nb.llm.protocol import LLM
from flashevolve_nb.repair.reflective import ask_repair

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext
    from flashevolve_nb.engine.pool import Pool

__all__ = ["MetaPolicy"]


@dataclass
class MetaPolicy:
    llm: LLM | None = None
    group_size: int = 4
    max_buffer: int = 16
    """Beyond this, the oldest buffered proposal is dropped: memory stays bounded."""
    max_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str = field(default="meta", init=False)
    _buffer: deque[WorkItem] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"meta: group_size must be >= 1 (got {self.group_size})")
        if self.max_buffer < self.group_size:
            raise ValueError(
                f"meta: max_buffer ({self.max_buffer}) must be >= group_size ({self.group_size})"
            )

    @property
    def buffered(self) -> tuple[WorkItem, ...]:
        return tuple(self._buffer)

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        seen = tuple(e.artifact.id for e in ctx.pool.since(item.base_version))
        dropped = ""
        if len(self._buffer) >= self.max_buffer:
            old = self._buffer.popleft()
            dropped = f"; buffer full, oldest ({old.artifact.id}) dropped"
        self._buffer.append(item)
        return Decision(
            "defer",
            f"buffered for distillation after the next improvement "
            f"({len(self._buffer)} waiting){dropped}",
            history_ids=seen,
        )

    def take_groups(self, pool: Pool) -> Sequence[Sequence[WorkItem]]:
        items = list(self._buffer)
        self._buffer.clear()
        n = self.group_size
        return [items[i : i + n] for i in range(0, len(items), n)]

    async def distil(self, group: Sequence[WorkItem], ctx: StageContext) -> Decision:
        params = dict(self.params)
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return await ask_repair(
            ctx, self.llm, group, params=params, note=f"meta distillation of {len(group)}"
        )
