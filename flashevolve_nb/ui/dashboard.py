"""``run.dashboard()``: one widget to watch and steer a run.

Threads (see notes/jupyter-async.md): the run's loop never waits for the UI.
One refresher thread per dashboard samples ``run.snapshot()`` and the new
events a few times per second and writes the widgets, only what changed, one
message per widget. Widget callbacks (a person's clicks) arrive on the
kernel's thread; they only call ``Run`` methods, write their own status line,
and poke the refresher so that the result shows at once. When the run has
ended the refresher stops, and a poke redraws in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import ipywidgets as w

from flashevolve_nb.runtime.run import Run
from flashevolve_nb.ui.controls import ControlsView
from flashevolve_nb.ui.editor import EditorView
from flashevolve_nb.ui.eventlog import EventLogView
from flashevolve_nb.ui.header import HeaderView
from flashevolve_nb.ui.html import esc
from flashevolve_nb.ui.pool import PoolView
from flashevolve_nb.ui.stages import StagesView
from flashevolve_nb.ui.staleness import StalenessView
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick

__all__ = ["Dashboard"]

log = logging.getLogger("flashevolve_nb.ui")

MIN_GAP = 0.1
"""Real seconds between two refreshes at least, however often pokes come."""


class _View(Protocol):
    widget: Any

    def update(self, tick: Tick) -> None: ...


class Dashboard:
    """The live view of one run. Display it in a cell (it is the ``widget``).

    ``interval`` is the refresh period in seconds (4 Hz by default). With
    ``autostart=False`` nothing refreshes by itself: call :meth:`refresh`
    (tests do, to step the view deterministically).
    """

    def __init__(self, run: Run, *, interval: float = 0.25, autostart: bool = True) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds (got {interval!r})")
        self.run = run
        self.interval = interval
        self.guard = EchoGuard()
        self.refreshes = 0
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._full = True
        self._full_tab: int | None = None
        self._ui_errors: dict[str, int] = {}

        self.header = HeaderView(run, self.poke)
        self.stages = StagesView(run, self.guard, self.poke)
        self.staleness = StalenessView(self.guard, self.poke)
        self.pool = PoolView()
        self.editor = EditorView(run, self.guard, self.poke)
        self.controls = ControlsView(run, self.guard, self.poke)
        self.log = EventLogView(self.guard, self.poke)
        self._views: list[tuple[str, _View]] = [
            ("pipeline", self.stages),
            ("staleness", self.staleness),
            ("pool", self.pool),
            ("editor", self.editor),
            ("controls", self.controls),
            ("events", self.log),
        ]
        self.tabs = w.Tab(
            children=[v.widget for _, v in self._views], titles=[n for n, _ in self._views]
        )
        self.tabs.observe(self._tab_changed, names="selected_index")
        self.problem = w.HTML()
        self.widget = w.VBox([self.header.widget, self.problem, self.tabs])
        self.refresh()
        if autostart:
            self.start()

    # ---- refreshing ---------------------------------------------------------------
    def show(self, tab: str) -> None:
        """Switch to the tab named ``tab`` (``pipeline``, ``staleness``, ``pool``...)."""
        names = [n for n, _ in self._views]
        if tab not in names:
            raise ValueError(f"no tab {tab!r}; tabs: {names}")
        self.tabs.selected_index = names.index(tab)

    def _tab_changed(self, change: dict[str, Any]) -> None:
        self._full_tab = change["new"]
        self.poke()

    def refresh(self) -> None:
        """Bring every visible part up to date now (only what changed is sent)."""
        with self._lock:
            try:
                showing = self._views[self.tabs.selected_index or 0][1]
                snap = self.run.snapshot(controller=showing is self.controls)
                batch = self.run.events_since(self._seq)
            except Exception as exc:
                self._problem("reading the run", exc)
                return
            self._seq = batch.next_seq
            full, self._full = self._full, False
            fresh_tab, self._full_tab = self._full_tab, None
            selected = self.tabs.selected_index
            now = time.monotonic()
            with self.guard.writing():
                self._update("header", self.header, Tick(snap, batch.events, now, True, full))
                for i, (name, view) in enumerate(self._views):
                    tick = Tick(snap, batch.events, now, i == selected, full or i == fresh_tab)
                    self._update(name, view, tick)
            self.refreshes += 1

    def _update(self, name: str, view: _View, tick: Tick) -> None:
        try:
            view.update(tick)
        except Exception as exc:
            self._problem(f"the {name} view", exc)

    def _problem(self, where: str, exc: Exception) -> None:
        # A view's bug must not stop the others; say it once, keep refreshing.
        text = f"{where}: {type(exc).__name__}: {exc}"
        if text not in self._ui_errors:
            log.warning("dashboard of run %r: %s", self.run.name, text, exc_info=exc)
        self._ui_errors[text] = self._ui_errors.get(text, 0) + 1
        shown = "".join(f"<li>{esc(t)} (×{n})</li>" for t, n in list(self._ui_errors.items())[-3:])
        with self.guard.writing():
            assign(
                self.problem,
                value=f'<div style="color:#c62828">dashboard problem:<ul>{shown}</ul></div>',
            )

    def poke(self) -> None:
        """Refresh soon (a person just acted): wake the refresher, or refresh here
        when there is none (it stops once the run has ended)."""
        t = self._thread
        if t is not None and t.is_alive():
            self._wake.set()
        elif threading.current_thread() is not t:
            self.refresh()

    def start(self) -> None:
        """Start the refresher thread (``Dashboard`` does unless ``autostart=False``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"flashevolve-dashboard-{self.run.name}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            gap = time.monotonic() - last
            if gap < MIN_GAP:
                time.sleep(MIN_GAP - gap)
            last = time.monotonic()
            ended = self.run.done
            try:
                self.refresh()
            except Exception as exc:  # never a silent death of the refresher
                self._problem("refreshing", exc)
            if ended:
                return  # that refresh showed the final state

    def stop(self) -> None:
        """Stop refreshing (the widgets stay as they are)."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)

    def close(self) -> None:
        """Stop refreshing and close every widget of the dashboard."""
        self.stop()
        _close(self.widget)

    # ---- display ------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<Dashboard of run {self.run.name!r}; display it in a notebook cell>"


def _close(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close(child)
    widget.close()
