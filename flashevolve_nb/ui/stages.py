"""The pipeline view: a row per stage with its controls, and a live plot of queues and rates."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import ipywidgets as w
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from flashevolve_nb.engine.stage import StageSnapshot
from flashevolve_nb.runtime.run import Run
from flashevolve_nb.ui.html import esc
from flashevolve_nb.ui.sync import EchoGuard, assign
from flashevolve_nb.ui.tick import Tick, act

__all__ = ["StageRow", "StagesView"]

RATE_WINDOW = 10.0
"""Real seconds over which items/min is measured: recent enough to show a change soon."""

PLOT_EVERY = 1.0
"""Real seconds between plot updates (a plotly update costs about four messages)."""

PLOT_POINTS = 600


class StageRow:
    """Queue depth, busy/total workers, items/min, a pause toggle and a worker count."""

    def __init__(self, run: Run, name: str, guard: EchoGuard, poke: Callable[[], None]) -> None:
        self.name = name
        self._run = run
        self._guard = guard
        self._poke = poke
        self.label = w.HTML(f"<b>{esc(name)}</b>", layout=w.Layout(width="90px"))
        self.stats = w.HTML(layout=w.Layout(width="600px"))
        self.pause = w.Button(description="pause", icon="pause", layout=w.Layout(width="100px"))
        self.workers = w.BoundedIntText(
            min=0, max=1024, description="workers", layout=w.Layout(width="170px")
        )
        self.status = w.HTML()
        self.pause.on_click(lambda _: self._toggle())
        self.workers.observe(self._workers_changed, names="value")
        self.widget = w.HBox([self.label, self.stats, self.pause, self.workers, self.status])
        # Stable hooks for browser tests and user CSS; the layout may change, these do not.
        self.widget.add_class("fe-stage")
        self.widget.add_class(f"fe-stage-{name}")
        self.stats.add_class("fe-stage-stats")
        self.pause.add_class("fe-pause-toggle")
        self.workers.add_class("fe-workers")
        self.status.add_class("fe-stage-status")

    def _toggle(self) -> None:
        def do() -> str:
            if self._run.snapshot().stage(self.name).paused:
                self._run.resume(self.name)
                return "resumed"
            self._run.pause(self.name)
            return "paused"

        act(self.status, do)
        self._poke()

    def _workers_changed(self, change: dict[str, object]) -> None:
        if self._guard.active:
            return  # the refresher showing the current count, not a person asking
        n = change["new"]
        assert isinstance(n, int)

        def do() -> str:
            self._run.set_workers(self.name, n)
            return f"{n} workers"

        act(self.status, do)
        self._poke()

    def update(self, s: StageSnapshot, rate: float, ended: bool) -> None:
        bar = min(s.queued, 40)
        stats = (
            f'<span style="font-family:monospace">queue <b>{s.queued:3d}</b> '
            f'<span style="display:inline-block;width:{bar * 3}px;height:8px;'
            f'background:#90caf9"></span>'
            f'<span style="display:inline-block;width:{(40 - bar) * 3}px"></span> '
            f'busy <b class="fe-busy">{s.busy}/{s.workers}</b> · '
            f"<b>{rate:5.1f}</b> items/min"
            f' · done <span class="fe-processed-count">{s.processed}</span>'
            + (f" · failed {s.failed}" if s.failed else "")
            + (f" · dropped {s.dropped}" if s.dropped else "")
            + "</span>"
        )
        assign(self.stats, value=stats)
        assign(
            self.pause,
            description="resume" if s.paused else "pause",
            icon="play" if s.paused else "pause",
            button_style="warning" if s.paused else "",
            disabled=ended,
        )
        assign(self.workers, value=s.workers, disabled=ended)


class StagesView:
    def __init__(self, run: Run, guard: EchoGuard, poke: Callable[[], None]) -> None:
        names = [s.name for s in run.pipeline.stages]
        self.rows = {n: StageRow(run, n, guard, poke) for n in names}
        self._names = names
        # (real time, sim minutes, processed per stage) for items/min
        self._counts: deque[tuple[float, float, tuple[int, ...]]] = deque(maxlen=4096)
        # (sim minutes, queue depths, rates) for the plot
        self._series: deque[tuple[float, tuple[int, ...], tuple[float, ...]]] = deque(
            maxlen=PLOT_POINTS
        )
        self._plotted_at = float("-inf")
        self._samples = 0
        self._plotted_samples = -1
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            subplot_titles=("queue depth", "items / min (run clock)"),
        )
        for n in names:
            fig.add_scatter(x=[], y=[], name=n, mode="lines", legendgroup=n, row=1, col=1)
        for n in names:
            fig.add_scatter(
                x=[], y=[], name=n, mode="lines", legendgroup=n, showlegend=False, row=2, col=1
            )
        fig.update_layout(height=360, margin={"l": 40, "r": 10, "t": 30, "b": 30})
        fig.update_xaxes(title_text="minutes (run clock)", row=2, col=1)
        self.plot = go.FigureWidget(fig)
        self.plot.add_class("fe-pipeline-plot")
        self.widget = w.VBox([*(r.widget for r in self.rows.values()), self.plot])

    def update(self, tick: Tick) -> None:
        s = tick.snap
        processed = tuple(st.processed for st in s.stages)
        minutes = s.sim_seconds / 60.0
        self._counts.append((tick.real, minutes, processed))
        while len(self._counts) > 2 and tick.real - self._counts[1][0] >= RATE_WINDOW:
            self._counts.popleft()
        _, m0, p0 = self._counts[0]
        span = minutes - m0
        rates = tuple(
            (p - q) / span if span > 0 else 0.0 for p, q in zip(processed, p0, strict=True)
        )
        depths = tuple(st.queued for st in s.stages)
        if not self._series or self._series[-1][0] != minutes:
            self._series.append((minutes, depths, rates))
            self._samples += 1
        if not tick.visible:
            return
        for st, rate in zip(s.stages, rates, strict=True):
            self.rows[st.name].update(st, rate, s.done)
        due = tick.full or tick.real - self._plotted_at >= PLOT_EVERY or s.done
        if due and self._samples != self._plotted_samples:
            self._draw()
            self._plotted_at = tick.real
            self._plotted_samples = self._samples

    def _draw(self) -> None:
        xs = [p[0] for p in self._series]
        k = len(self._names)
        with self.plot.batch_update():
            for i in range(k):
                self.plot.data[i].x = xs
                self.plot.data[i].y = [p[1][i] for p in self._series]
                self.plot.data[k + i].x = xs
                self.plot.data[k + i].y = [round(p[2][i], 2) for p in self._series]
