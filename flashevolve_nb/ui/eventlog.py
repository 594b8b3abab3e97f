"""The event log: a filterable tail of recent events.

Events are kept as they come and formatted only when shown (a busy run
emits hundreds per second, most of them LLM calls nobody reads). Long text
fields (prompts, answers, tracebacks) are left out of a line; what is shown
is escaped.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.engine.events import Event
from flashevolve_nb.ui.html import esc
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick

__all__ = ["EventLogView", "format_event"]

KEEP = 5000
SHOW = 60
NOT_LLM = "-llm"
EVERYTHING = "*"
_LONG = frozenset({"t", "traceback", "request", "answer"})
_LLM = frozenset({"llm_call_started", "llm_call_finished", "llm_retry"})


def format_event(e: Event) -> str:
    parts = []
    for f in dataclasses.fields(e):
        if f.name in _LONG:
            continue
        v = getattr(e, f.name)
        if isinstance(v, Artifact):
            v = v.id
        elif isinstance(v, float):
            v = f"{v:.4g}"
        text = str(v).replace("\n", " ")
        parts.append(f"{f.name}={text if len(text) <= 80 else text[:79] + '…'}")
    return f"{e.t / 60:8.2f} min  {e.kind:<18} " + " ".join(parts)


class _Entry:
    __slots__ = ("event", "line")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.line: str | None = None

    def text(self) -> str:
        if self.line is None:
            self.line = format_event(self.event)
        return self.line


class EventLogView:
    def __init__(self, guard: EchoGuard, poke: Callable[[], None]) -> None:
        self._guard = guard
        self._poke = poke
        self._entries: deque[_Entry] = deque(maxlen=KEEP)
        self._kinds: dict[str, None] = {}
        self._shown_kinds: tuple[str, ...] = ()
        self._dirty = True
        self.kind = w.Dropdown(
            options=[("everything but LLM calls", NOT_LLM), ("everything", EVERYTHING)],
            value=NOT_LLM,
            description="show",
        )
        self.search = w.Text(placeholder="text to look for", description="containing")
        self.lines = w.HTML()
        self.kind.observe(self._filter_changed, names="value")
        self.search.observe(self._filter_changed, names="value")
        self.widget = w.VBox([w.HBox([self.kind, self.search]), self.lines])

    def _filter_changed(self, change: dict[str, Any]) -> None:
        if self._guard.active:
            return
        self._dirty = True
        self._poke()

    def update(self, tick: Tick) -> None:
        kind = self.kind.value
        if tick.events:
            self._entries.extend(map(_Entry, tick.events))
            new = {e.kind for e in tick.events}
            # First-seen order: options keep their places (a selection syncs by position).
            self._kinds.update(dict.fromkeys(sorted(new - self._kinds.keys())))
            self._dirty = self._dirty or any(_wanted(k, kind) for k in new)
        if not tick.visible:
            return
        kinds = tuple(self._kinds)
        if kinds != self._shown_kinds:
            options = [
                ("everything but LLM calls", NOT_LLM),
                ("everything", EVERYTHING),
                *((k, k) for k in kinds),
            ]
            assign(self.kind, options=options, value=kind)
            self._shown_kinds = kinds
        if not (self._dirty or tick.full):
            return
        needle = self.search.value.strip().lower()
        shown: list[str] = []
        for entry in reversed(self._entries):
            if not _wanted(entry.event.kind, kind):
                continue
            line = entry.text()
            if needle and needle not in line.lower():
                continue
            shown.append(line)
            if len(shown) >= SHOW:
                break
        body = "\n".join(esc(line) for line in shown) or "(no events match)"  # newest first
        assign(
            self.lines,
            value=(
                f'<pre style="font-size:11px;max-height:420px;overflow:auto;margin:0">{body}</pre>'
            ),
        )
        self._dirty = False


def _wanted(kind: str, choice: str | None) -> bool:
    if choice == EVERYTHING:
        return True
    if choice == NOT_LLM or choice is None:
        return kind not in _LLM
    return kind == choice
