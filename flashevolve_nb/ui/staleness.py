"""The staleness view: every stale item the policy judged, and why, with the repair's diff.

Rows come from ``StaleDetected`` / ``PolicyDecision`` events; the detail of a
selected row shows the stale artifact, the pool history it was judged
against, the repair prompt and answer, and a before/after diff. All of that
is LLM text, so all of it is escaped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import PolicyDecision, StaleDetected
from flashevolve_nb.engine.pool import PoolEntry
from flashevolve_nb.ui.html import artifact_html, diff_html, esc, num, pre, table
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick

__all__ = ["StaleRow", "StalenessView"]

MAX_ROWS = 300
_KINDS = frozenset({StaleDetected.kind, PolicyDecision.kind})

DECISION_COLOURS = {
    "accept": "#2e7d32",
    "patch": "#1565c0",
    "discard": "#c62828",
    "defer": "#6a1b9a",
}


@dataclass(frozen=True, slots=True)
class StaleRow:
    key: int
    decision: PolicyDecision
    base_version: int
    pool_version: int

    def label(self) -> str:
        d = self.decision
        return (
            f"{d.t / 60:6.1f} min · step {d.step} · {d.artifact_id} · v{self.base_version}"
            f"→v{self.pool_version} (stale {d.staleness}) · before {d.point} · "
            f"{d.policy}: {d.decision}"
        )


class StalenessView:
    def __init__(self, guard: EchoGuard, poke: Callable[[], None]) -> None:
        self._guard = guard
        self._poke = poke
        self._pending: dict[tuple[str, str], StaleDetected] = {}
        self._rows: deque[StaleRow] = deque(maxlen=MAX_ROWS)
        self._next_key = 0
        self._shown_rows = -1
        self._selected: int | None = None
        self._shown_detail: tuple[int | None, int] = (None, -1)
        self.summary = w.HTML()
        self.follow = w.Checkbox(value=True, description="follow new rows")
        self.table = w.Select(options=[], rows=12, layout=w.Layout(width="100%"))
        self.detail = w.HTML()
        self.table.observe(self._select, names="value")
        self.follow.observe(lambda _: self._poke(), names="value")
        self.widget = w.VBox(
            [
                self.summary,
                w.HBox(
                    [
                        w.HTML(
                            "<i>select a row for the stale artifact, its history and the "
                            "repair (the list then holds still)</i>"
                        ),
                        self.follow,
                    ]
                ),
                self.table,
                self.detail,
            ]
        )

    def _select(self, change: dict[str, Any]) -> None:
        if self._guard.active:
            return  # new rows arriving, not a person choosing
        # The refresher renders the detail: it is the one writer of that widget.
        self._selected = change["new"]
        # A list that moves under the pointer loses the row a person picked (selection
        # syncs by position), so it holds still until they ask to follow again.
        self.follow.value = False
        self._poke()

    def update(self, tick: Tick) -> None:
        for e in tick.events:
            if e.kind not in _KINDS:
                continue
            if isinstance(e, StaleDetected):
                self._pending[(e.item_id, e.point)] = e
            elif isinstance(e, PolicyDecision):
                seen = self._pending.pop((e.item_id, e.point), None)
                base = seen.base_version if seen else -1
                pool = seen.pool_version if seen else -1
                self._rows.append(StaleRow(self._next_key, e, base, pool))
                self._next_key += 1
        if not tick.visible:
            return
        s = tick.snap
        decisions = ", ".join(f"{k} {v}" for k, v in sorted(s.stats.decisions.items())) or "none"
        assign(
            self.summary,
            value=(
                f"policy <b>{esc(s.policy)}</b> · stale items seen <b>{s.stats.stale_seen}</b>"
                f" · decisions: {esc(decisions)}"
            ),
        )
        if self._next_key != self._shown_rows and (self.follow.value or self._shown_rows < 0):
            options = [(r.label(), r.key) for r in reversed(self._rows)]
            keep = self._selected if any(r.key == self._selected for r in self._rows) else None
            # New options reset a selection in ipywidgets: give it back in the same message.
            assign(self.table, options=options, value=keep)
            self._shown_rows = self._next_key
        shown = (self._selected, s.pool.version)
        if shown != self._shown_detail or tick.full:
            row = next((r for r in self._rows if r.key == self._selected), None)
            entries = {e.artifact.id: e for e in s.pool.entries}
            assign(self.detail, value=detail_html(row, entries) if row else "")
            self._shown_detail = shown


def detail_html(row: StaleRow, entries: dict[str, PoolEntry]) -> str:
    d = row.decision
    colour = DECISION_COLOURS.get(d.decision, "#455a64")
    parts = [
        f'<h4 style="margin:4px 0">step {d.step}, {esc(d.artifact_id)}: '
        f'<span style="color:{colour}">{esc(d.decision)}</span> by {esc(d.policy)} '
        f"before {esc(d.point)}</h4>",
        f"<div>stale by {d.staleness} version(s) (derived from v{row.base_version}, pool at "
        f"v{row.pool_version}) · {d.tokens:,} tokens · reason: {esc(d.reason)}</div>",
    ]
    stale: Artifact | None = getattr(d, "artifact", None)
    if stale is None and d.artifact_id in entries:
        stale = entries[d.artifact_id].artifact
    if stale is not None:
        parts.append("<h5>the stale artifact</h5>" + artifact_html(stale.components, 200))
    history: tuple[str, ...] = getattr(d, "history_ids", ())
    if history:
        rows = []
        for hid in history:
            entry = entries.get(hid)
            if entry is None:
                rows.append([hid, "", "", "(no longer in the pool)"])
                continue
            first = next(iter(entry.artifact.components.values()), "")
            rows.append(
                [hid, entry.artifact.origin.value, num(entry.score), first[:120].replace("\n", " ")]
            )
        parts.append(
            f"<h5>what it was judged against: {len(history)} artifact(s) admitted since "
            f"v{row.base_version}</h5>" + table(["id", "origin", "score", "text (start)"], rows)
        )
    request: str = getattr(d, "request", "")
    answer: str = getattr(d, "answer", "")
    if request:
        parts.append(f"<details><summary>repair prompt</summary>{pre(request, 300)}</details>")
    if answer:
        parts.append(f"<h5>the model's answer</h5>{pre(answer, 300)}")
    replacement: Artifact | None = getattr(d, "replacement", None)
    if replacement is not None and stale is not None:
        parts.append(
            f"<h5>repair: {esc(stale.id)} → {esc(replacement.id)}</h5>"
            + diff_html(stale.components, replacement.components)
        )
    return "".join(parts)
