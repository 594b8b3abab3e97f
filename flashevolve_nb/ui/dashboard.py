"""``run.dashboard()``: one client-side widget to watch and steer a run.

The page renders everything from one model (``widgets/PROTOCOL.md``): the
``archive`` trait (the whole run so far; what a saved notebook keeps) and a
``tick`` message a few times per second (the new snapshot plus what the
run's history appended). Looking around (tabs, selection, filters, zoom,
replay) happens in the browser and never waits for the kernel; only steering
comes back, as a ``cmd`` message answered with an ``ack``.

Threads (see notes/jupyter-async.md): the run's loop never waits for the
page. One refresher thread per dashboard samples the run and sends ticks;
commands arrive on the kernel's thread (or a subshell's) and only call
``Run`` methods. A lock orders what is sent, so the page sees ticks in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

import anywidget
import traitlets

from flashevolve_nb.runtime.history import HistoryCursor
from flashevolve_nb.ui.source import Source

__all__ = ["Dashboard", "bundle"]

log = logging.getLogger("flashevolve_nb.ui")

MIN_GAP = 0.1
"""Real seconds between two ticks at least, however often pokes come."""

ARCHIVE_EVERY = 60.0
"""Real seconds between two archive updates while a run goes on (a notebook saved
mid-run keeps at most this much less than the page showed)."""

_MISSING = """
export default { render({ el }) {
  const p = document.createElement("pre");
  p.textContent = %r;
  el.appendChild(p);
} };
"""


def bundle(name: str) -> str:
    """A built front-end file from ``flashevolve_nb/ui/static`` ("" if it is not there)."""
    path = resources.files("flashevolve_nb.ui").joinpath("static", name)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _esm() -> str:
    js = bundle("dashboard.js")
    if js:
        return js
    return _MISSING % (
        "The dashboard's front-end bundle is missing from this installation "
        "(flashevolve_nb/ui/static/dashboard.js). In a source checkout, build it: "
        "cd widgets && npm ci && npm run build"
    )


class Dashboard(anywidget.AnyWidget):
    """The dashboard of one run, live or stored. Display it in a cell.

    ``interval`` is the refresh period in real seconds (4 Hz by default). With
    ``autostart=False`` nothing refreshes by itself: call :meth:`refresh` (tests
    do, to step the view deterministically).
    """

    _esm = traitlets.Unicode(_esm()).tag(sync=True)
    _css = traitlets.Unicode(bundle("dashboard.css")).tag(sync=True)
    archive = traitlets.Dict().tag(sync=True)
    """The whole model (PROTOCOL.md): set at creation, at the end, and now and then."""

    def __init__(
        self,
        source: Source,
        *,
        interval: float = 0.25,
        autostart: bool = True,
        archive_every: float = ARCHIVE_EVERY,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds (got {interval!r})")
        super().__init__()
        self.source = source
        self.interval = interval
        self.archive_every = archive_every
        self.messages = 0
        """Comm messages sent to the page (ticks, full models, acks, archive updates)."""
        self.refreshes = 0
        self._fe_lock = threading.RLock()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._refresher: threading.Thread | None = None
        self._cursor = HistoryCursor()
        self._tick = 0
        self._last_snapshot: dict[str, Any] | None = None
        self._sync_wanted = False
        self._archived_at = 0.0
        self._final = False
        self._problems: dict[str, int] = {}
        self.on_msg(self._on_msg)
        self._write_archive()
        if source.done:
            self._final = True
        else:
            on_end = getattr(source, "on_end", None)
            if callable(on_end):
                # The final view is written before `await run` returns, not a refresh later.
                on_end(self._refresh_safely)
            if autostart:
                self.start()

    # ---- the model -------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        """The whole model now (what ``archive`` holds after the next archive update)."""
        with self._fe_lock:
            return self._full()

    def _full(self) -> dict[str, Any]:
        snap = self.source.snapshot_json()
        hist, self._cursor = self.source.history.full()
        self._last_snapshot = snap
        return {"v": 1, "tick": self._tick, "meta": self.source.meta(), "snapshot": snap, **hist}

    def _write_archive(self) -> None:
        with self._fe_lock:
            self.archive = self._full()
            self.messages += 1
            self._archived_at = time.monotonic()

    def refresh(self) -> None:
        """Send the page what changed since the last refresh (nothing if nothing did)."""
        with self._fe_lock:
            ended = self.source.done
            if self._sync_wanted:
                self._sync_wanted = False
                self._post({"type": "full", "model": self._full()})
            snap = self.source.snapshot_json()
            delta, cursor = self.source.history.delta(self._cursor)
            moved = (
                snap != self._last_snapshot
                or any(delta[k] for k in ("events", "pool", "stories", "artifacts"))
                or bool(delta["series"]["t"])
            )
            if moved:
                self._tick += 1
                self._post({"type": "tick", "tick": self._tick, "prev": self._tick - 1,
                            "snapshot": snap, **delta})  # fmt: skip
                self._cursor = cursor
                self._last_snapshot = snap
            self.refreshes += 1
            if ended and not self._final:
                # The final word: what a saved notebook keeps, and what a reopened page shows.
                self._final = True
                self._write_archive()
            elif not ended and time.monotonic() - self._archived_at > self.archive_every:
                self._write_archive()

    def _post(self, content: dict[str, Any]) -> None:
        if getattr(self, "comm", None) is None:
            return  # closed: nobody to tell
        self.send(content)
        self.messages += 1

    # ---- the page's messages -----------------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, Mapping):
            return
        kind = content.get("type")
        if kind == "sync":
            with self._fe_lock:
                if self._refresher is not None and self._refresher.is_alive():
                    self._sync_wanted = True
                else:
                    self._post({"type": "full", "model": self._full()})
            self.poke()
        elif kind == "cmd":
            ack = self.source.command(str(content.get("cmd", "")), content.get("args") or {})
            with self._fe_lock:
                self._post({"type": "ack", "id": content.get("id"), **ack})
            self.poke()

    # ---- refreshing ----------------------------------------------------------------------
    def poke(self) -> None:
        """Refresh soon (a person just acted); refresh here when no refresher runs."""
        t = self._refresher
        if t is not None and t.is_alive():
            self._wake.set()
        elif threading.current_thread() is not t:
            self._refresh_safely()

    def start(self) -> None:
        """Start the refresher thread (done for you unless ``autostart=False``)."""
        if self._refresher is not None and self._refresher.is_alive():
            return
        self._halt.clear()
        self._refresher = threading.Thread(
            target=self._loop, name=f"flashevolve-dashboard-{self.source.name}", daemon=True
        )
        self._refresher.start()

    def _loop(self) -> None:
        last = 0.0
        while not self._halt.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._halt.is_set():
                return
            gap = time.monotonic() - last
            if gap < MIN_GAP:
                time.sleep(MIN_GAP - gap)
            last = time.monotonic()
            self._refresh_safely()
            if self._final:
                return

    def _refresh_safely(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # never a silent death of the refresher
            text = f"{type(exc).__name__}: {exc}"
            if text not in self._problems:
                log.warning("dashboard of %r: %s", self.source.name, text, exc_info=exc)
            self._problems[text] = self._problems.get(text, 0) + 1

    @property
    def problems(self) -> Mapping[str, int]:
        """Errors the refresher met (text -> times); it keeps going after each."""
        return dict(self._problems)

    def stop(self) -> None:
        """Stop refreshing (the page keeps what it has)."""
        if not hasattr(self, "_halt"):
            return  # closed before it was built (ipywidgets closes in __del__)
        self._halt.set()
        self._wake.set()
        t = self._refresher
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)

    def close(self) -> None:
        self.stop()
        super().close()

    def report(self, path: str | Any) -> Any:
        """Write this view as one self-contained HTML file (no kernel, no network needed)."""
        from flashevolve_nb.ui.report import write_report

        return write_report(self.model(), path)

    def __repr__(self) -> str:
        return f"<Dashboard of {self.source.name!r}; display it in a notebook cell>"
