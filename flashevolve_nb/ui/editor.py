"""The editor: load an artifact (admitted, or waiting in a paused stage), edit, send it back.

"Submit" makes a human proposal: a new artifact (origin ``human``) whose
parent is the loaded one, entering the run as a new step through gate and
validation. "Replace" swaps the artifact of the queued item it came from.
Text is edited in a ``Textarea``, which shows text as text.

The refresher writes only the list of sources; what is loaded, the text and
the status belong to the person's callbacks. What a submit uses is what was
*loaded*, never what the source list shows now (new sources can shift it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from flashevolve_nb.engine.artifact import Artifact
from flashevolve_nb.runtime.run import Run
from flashevolve_nb.ui.html import esc
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick, act

__all__ = ["EditorView", "Loaded"]

MAX_POOL = 500
"""Admitted artifacts offered for editing (the first ones; "load the best" reaches any)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    artifact: Artifact
    item_id: str | None
    """The queued item it came from, if any (then Replace and Drop apply)."""
    in_pool: bool


class EditorView:
    def __init__(self, run: Run, guard: EchoGuard, poke: Callable[[], None]) -> None:
        self._run = run
        self._guard = guard
        self._poke = poke
        self.loaded: Loaded | None = None
        self.last_submitted: Artifact | None = None
        self.source = w.Dropdown(
            options=[], value=None, description="artifact", layout=w.Layout(width="70%")
        )
        self.component = w.Dropdown(options=[], description="component")
        self.text = w.Textarea(
            rows=14, layout=w.Layout(width="100%"), placeholder="pick an artifact to edit"
        )
        self.info = w.HTML()
        self.status = w.HTML()
        self.submit = w.Button(
            description="submit as human proposal", icon="paper-plane", button_style="success",
            layout=w.Layout(width="230px"),
        )  # fmt: skip
        self.replace = w.Button(
            description="replace queued item", icon="exchange", layout=w.Layout(width="190px")
        )
        self.drop = w.Button(
            description="drop queued item", icon="trash", layout=w.Layout(width="170px")
        )
        self.load_best = w.Button(description="load the best", icon="trophy")
        self.load_best.on_click(lambda _: act(self.status, self._load_best))
        self.source.observe(self._pick, names="value")
        self.component.observe(self._pick_component, names="value")
        self.submit.on_click(lambda _: self._send())
        self.replace.on_click(lambda _: self._replace())
        self.drop.on_click(lambda _: self._drop())
        self.widget = w.VBox(
            [
                w.HTML(
                    "<i>admitted artifacts, and items waiting in paused stages (pause a "
                    "stage to catch its items)</i>"
                ),
                w.HBox([self.source, self.load_best]),
                self.info,
                self.component,
                self.text,
                w.HBox([self.submit, self.replace, self.drop]),
                self.status,
            ]
        )
        self._sources: tuple[tuple[str, str], ...] = ()

    # ---- the person's side ----------------------------------------------------
    def _pick(self, change: dict[str, Any]) -> None:
        if self._guard.active or change["new"] is None:
            return
        act(self.status, lambda: self.load(change["new"]))

    def load(self, key: str) -> str:
        """Load ``pool:<artifact id>`` or ``queue:<item id>`` into the editor."""
        kind, _, ident = key.partition(":")
        if kind == "queue":
            item = next((i for i in self._run.queued() if i.id == ident), None)
            if item is None:
                raise LookupError(f"item {ident} is no longer waiting (a worker took it)")
            art, item_id = item.artifact, item.id
        else:
            art, item_id = self._run.artifact(ident), None
        in_pool = any(e.artifact.id == art.id for e in self._run.snapshot().pool.entries)
        self.loaded = Loaded(art, item_id, in_pool)
        names = list(art.components)
        self.component.options = names
        self.component.value = names[0]
        self.text.value = art[names[0]]
        where = f"waiting as item {item_id}" if item_id else "admitted"
        self.info.value = (
            f"editing <b>{esc(art.id)}</b> ({esc(art.origin.value)}, {esc(where)}; parents "
            f"{esc(', '.join(art.parents) or 'none')})"
        )
        return f"loaded {art.id}"

    def _load_best(self) -> str:
        best = self._run.snapshot().pool.best_id
        if best is None:
            raise LookupError("nothing is admitted yet")
        return self.load(f"pool:{best}")

    def _pick_component(self, change: dict[str, Any]) -> None:
        if self.loaded is not None and change["new"] in self.loaded.artifact.components:
            self.text.value = self.loaded.artifact[change["new"]]

    def _need(self) -> Loaded:
        if self.loaded is None:
            raise ValueError("load an artifact first")
        return self.loaded

    def _send(self) -> None:
        def do() -> str:
            src = self._need()
            art = src.artifact
            edit = {self.component.value: self.text.value}
            if src.in_pool:
                new = self._run.submit(edit, parent=art.id)
            else:
                # A queued proposal is not admitted: build on its admitted parent and keep
                # the proposal in the lineage as a second parent.
                new = self._run.submit(
                    {**art.components, **edit}, parent=art.parents[0], extra_parents=(art.id,)
                )
            self.last_submitted = new
            return f"submitted {new.id} (parents {', '.join(new.parents)}) as a new step"

        act(self.status, do)
        self._poke()

    def _replace(self) -> None:
        def do() -> str:
            src = self._need()
            if src.item_id is None:
                raise ValueError("this artifact is not waiting in a queue; submit it instead")
            new = self._run.replace(src.item_id, {self.component.value: self.text.value})
            if new is None:
                raise LookupError(f"item {src.item_id} is no longer waiting (a worker took it)")
            self.last_submitted = new
            return f"item {src.item_id} now carries {new.id} (parent {new.parents[0]})"

        act(self.status, do)
        self._poke()

    def _drop(self) -> None:
        def do() -> str:
            src = self._need()
            if src.item_id is None:
                raise ValueError("this artifact is not waiting in a queue")
            if not self._run.drop(src.item_id):
                raise LookupError(f"item {src.item_id} is no longer waiting (a worker took it)")
            return f"dropped item {src.item_id}"

        act(self.status, do)
        self._poke()

    # ---- the refresher's side ---------------------------------------------------
    def update(self, tick: Tick) -> None:
        if not tick.visible:
            return
        s = tick.snap
        paused = {st.name for st in s.stages if st.paused}
        # Admission order, then waiting items: what is listed keeps its place as the list
        # grows (a selection syncs by position, so a reordered list would lose it).
        sources = tuple(
            (f"{e.artifact.id} · {e.artifact.origin.value} · score {e.score:.3f}",
             f"pool:{e.artifact.id}")
            for e in s.pool.entries[:MAX_POOL]
        ) + tuple(
            (f"waiting in {q.stage}: item {q.item_id} ({q.artifact_id}, step {q.step})",
             f"queue:{q.item_id}")
            for q in s.queued
            if q.stage in paused
        )  # fmt: skip
        if sources != self._sources:
            keep = self.source.value if any(v == self.source.value for _, v in sources) else None
            assign(self.source, options=sources, value=keep)
            self._sources = sources
        ended = s.done
        for b in (self.submit, self.replace, self.drop):
            assign(b, disabled=ended)
