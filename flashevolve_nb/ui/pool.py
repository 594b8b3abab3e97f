"""The pool view: the best artifact, score over time with lineage, the per-instance grid.

One plot shows both score over time and lineage: each admitted artifact is a
point (admission time, score) coloured by origin, with a line from its parent;
a step line follows the best score. The grid shows the per-instance scores of
the top artifacts, which is where GEPA's Pareto structure is visible: an
artifact that is not the best on average can still own some instances.
"""

from __future__ import annotations

import ipywidgets as w
import plotly.graph_objects as go

from flashevolve_nb.engine.pool import PoolEntry, PoolSnapshot
from flashevolve_nb.ui.html import artifact_html, esc, num
from flashevolve_nb.ui.sync import assign
from flashevolve_nb.ui.tick import Tick

__all__ = ["ORIGIN_COLOURS", "PoolView"]

ORIGIN_COLOURS = {
    "seed": "#546e7a",
    "proposal": "#1e88e5",
    "repair": "#fb8c00",
    "human": "#43a047",
    "merge": "#8e24aa",
}

GRID_ROWS = 25
DRAW_EVERY = 1.0
"""Real seconds between redraws of the two plots."""


class PoolView:
    def __init__(self) -> None:
        self.best = w.HTML()
        self.lineage = go.FigureWidget()
        self.lineage.add_scatter(
            x=[], y=[], mode="lines", line={"color": "rgba(120,120,120,0.35)", "width": 1},
            name="parent → child", hoverinfo="skip",
        )  # fmt: skip
        self.lineage.add_scatter(
            x=[], y=[], mode="lines", line={"shape": "hv", "color": "black", "width": 1.5},
            name="best so far",
        )  # fmt: skip
        for origin, colour in ORIGIN_COLOURS.items():
            self.lineage.add_scatter(
                x=[], y=[], mode="markers", name=origin, marker={"color": colour, "size": 7},
                hovertemplate="%{text}<br>score %{y:.3f}<br>%{x:.1f} min<extra></extra>", text=[],
            )  # fmt: skip
        self.lineage.update_layout(
            title="score over time and lineage", height=340,
            xaxis_title="admitted at (minutes, run clock)", yaxis_title="validation score",
            margin={"l": 50, "r": 10, "t": 40, "b": 40},
        )  # fmt: skip
        self.grid = go.FigureWidget()
        self.grid.add_heatmap(z=[], x=[], y=[], colorscale="Viridis")
        self.grid.update_layout(
            title=f"per-instance scores, top {GRID_ROWS} (* = on a Pareto front)", height=420,
            margin={"l": 80, "r": 10, "t": 40, "b": 40}, xaxis_title="validation instance",
            yaxis={"autorange": "reversed"},
        )  # fmt: skip
        self.widget = w.VBox([self.best, self.lineage, self.grid])
        self._drawn_version = -1
        self._drawn_at = float("-inf")

    def update(self, tick: Tick) -> None:
        if not tick.visible:
            return
        pool = tick.snap.pool
        if pool.version == self._drawn_version and not tick.full:
            return
        if not tick.full and tick.real - self._drawn_at < DRAW_EVERY and not tick.snap.done:
            return
        assign(self.best, value=best_html(pool))
        self._draw(pool)
        self._drawn_version = pool.version
        self._drawn_at = tick.real

    def _draw(self, pool: PoolSnapshot) -> None:
        entries = {e.artifact.id: e for e in pool.entries}
        ex: list[float | None] = []
        ey: list[float | None] = []
        for e in pool.entries:
            for pid in e.artifact.parents:
                parent = entries.get(pid)
                if parent is not None:
                    ex += [parent.admitted_at / 60, e.admitted_at / 60, None]
                    ey += [parent.score, e.score, None]
        bx: list[float] = []
        by: list[float] = []
        for e in sorted(pool.entries, key=lambda e: e.admitted_at):
            if not by or e.score > by[-1]:
                bx.append(e.admitted_at / 60)
                by.append(e.score)
        if bx and pool.entries:
            bx.append(max(e.admitted_at for e in pool.entries) / 60)
            by.append(by[-1])
        top = sorted(pool.entries, key=lambda e: e.score, reverse=True)[:GRID_ROWS]
        front = set(pool.front_ids)
        with self.lineage.batch_update():
            self.lineage.data[0].x, self.lineage.data[0].y = ex, ey
            self.lineage.data[1].x, self.lineage.data[1].y = bx, by
            for k, origin in enumerate(ORIGIN_COLOURS):
                mine = [e for e in pool.entries if e.artifact.origin.value == origin]
                trace = self.lineage.data[2 + k]
                trace.x = [e.admitted_at / 60 for e in mine]
                trace.y = [e.score for e in mine]
                # Ids only: plotly renders some markup in hover text, LLM text stays out.
                trace.text = [_hover(e) for e in mine]
        with self.grid.batch_update():
            self.grid.data[0].z = [list(e.scores) for e in top]
            self.grid.data[0].x = list(pool.instance_ids)
            self.grid.data[0].y = [
                f"{e.artifact.id}{'*' if e.artifact.id in front else ''}" for e in top
            ]


def _hover(e: PoolEntry) -> str:
    parents = ", ".join(e.artifact.parents) or "none"
    return esc(f"{e.artifact.id} (v{e.version}) from {parents}")


def best_html(pool: PoolSnapshot) -> str:
    if pool.best_id is None:
        return "<i>nothing admitted yet</i>"
    best = next(e for e in pool.entries if e.artifact.id == pool.best_id)
    a = best.artifact
    return (
        f"<b>best: {esc(a.id)}</b> · score {num(best.score)} · origin {esc(a.origin.value)} · "
        f"parents {esc(', '.join(a.parents) or 'none')} · version {best.version} · "
        f"{len(pool.entries)} in the pool, {len(pool.front_ids)} on a front"
        + artifact_html(a.components, 220)
    )
