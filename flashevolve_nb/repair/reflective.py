"""The ``reflective`` policy: an LLM judges each stale proposal against what it missed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flashevolve_nb.engine.artifact import Origin
from flashevolve_nb.engine.items import WorkItem
from flashevolve_nb.engine.staleness import Decision
from flashevolve_nb.llm.protocol import LLM, LLMError
from flashevolve_nb.repair.history import history_of
from flashevolve_nb.repair.prompt import StaleProposal, parse_repair_answer, repair_prompt

if TYPE_CHECKING:
    from flashevolve_nb.engine.context import StageContext

__all__ = ["ReflectivePolicy", "ask_repair"]


async def ask_repair(
    ctx: StageContext,
    llm: LLM | None,
    items: Sequence[WorkItem],
    *,
    params: Mapping[str, Any],
    note: str,
) -> Decision:
    """Show the stale ``items`` to the repair LLM and turn its answer into a decision.

    A patch becomes a new artifact derived from the current best (its first
    parent), with every stale artifact as a further parent, anchored to the
    pool's current version; it is carried by the last item so that the
    workload's payload travels on to validation.
    """
    pool = ctx.pool
    best = pool.best()
    base = min(it.base_version for it in items)
    history = history_of(pool, base)
    seen = tuple(h.artifact_id for h in history)
    stale = [
        StaleProposal(it.artifact, it.base_version, pool.version - it.base_version) for it in items
    ]
    prompt = repair_prompt(best.artifact, best.version, best.score, stale, history)
    model = llm if llm is not None else ctx.llm_for("repair")
    try:
        completion = await ctx.chat(
            model, [{"role": "user", "content": prompt}], role="repair", **params
        )
    except LLMError as exc:
        return Decision(
            "discard", f"repair call failed, so discarded: {exc}", history_ids=seen, request=prompt
        )
    parsed = parse_repair_answer(
        completion.text,
        list(best.artifact.components),
        finish_reason=completion.finish_reason,
        allow_accept=len(items) == 1,
    )
    common: dict[str, Any] = {
        "history_ids": seen,
        "request": prompt,
        "answer": completion.text,
    }
    if parsed.action != "patch":
        return Decision(parsed.action, parsed.reason, **common)  # type: ignore[arg-type]
    changes = {k: v for k, v in parsed.components.items() if v != best.artifact[k]}
    if not changes:
        reason = f"the patch repeats the current best ({parsed.reason})"
        return Decision("discard", reason, **common)
    patched = best.artifact.derive(
        ctx.new_id("a"),
        changes,
        origin=Origin.REPAIR,
        base_version=pool.version,
        created_at=ctx.now(),
        extra_parents=tuple(it.artifact.id for it in items),
        note=f"{note}: {parsed.reason}",
        meta={"repair_of": tuple(it.artifact.id for it in items)},
    )
    carrier = items[-1]
    return Decision(
        "patch",
        parsed.reason,
        replacement=carrier.evolve(artifact=patched, base_version=pool.version),
        **common,
    )


@dataclass
class ReflectivePolicy:
    """Ask an LLM whether each stale proposal should be accepted, patched or discarded.

    ``llm`` serves the repair calls (default: the workload's ``repair`` model,
    which for GEPA is the reflection model unless one is given). A repaired
    artifact is anchored to the current version; if it goes stale again before
    admission it is accepted rather than repaired twice, since it was built
    on a recent best and a second repair would mostly spend tokens.
    """

    llm: LLM | None = None
    max_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str = field(default="reflective", init=False)

    async def decide(
        self, item: WorkItem, staleness: int, point: str, ctx: StageContext
    ) -> Decision:
        if item.artifact.origin == Origin.REPAIR:
            seen = tuple(e.artifact.id for e in ctx.pool.since(item.base_version))
            return Decision(
                "accept",
                f"already a repair (anchored at version {item.base_version}); not repaired twice",
                history_ids=seen,
            )
        params = dict(self.params)
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return await ask_repair(ctx, self.llm, [item], params=params, note="reflective repair")
