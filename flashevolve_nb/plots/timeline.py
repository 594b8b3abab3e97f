"""Stage occupancy over time: how many workers of each stage were busy, when.

Built from ``item_started`` and the event that ended the item
(``item_finished``, ``item_failed`` or ``item_dropped``). An item still being
worked on when the events end counts as busy until then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashevolve_nb.plots._source import Runs, esc, labelled, simulated_note

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["mean_busy", "occupancy_frame", "stage_timeline"]

_ENDS = ("item_finished", "item_failed", "item_dropped")
STAGE_ORDER = ("rollout", "propose", "gate", "validate")


def occupancy_frame(runs: Runs) -> pd.DataFrame:
    """Busy workers per stage as a step function: one row per change, columns
    ``run``, ``stage``, ``minutes`` (simulated) and ``busy`` (from then on)."""
    import pandas as pd

    rows: list[tuple[str, str, float, int]] = []
    for r in labelled(runs):
        ev = r.events
        moves = ev[ev["kind"].isin(("item_started", *_ENDS))].sort_values(
            kind="stable", by=["t", "seq"] if "seq" in ev else ["t"]
        )
        open_items: dict[tuple[str, str], float] = {}
        busy: dict[str, int] = {}
        for kind, stage, item, t in zip(
            moves["kind"], moves["stage"], moves["item_id"], moves["t"], strict=True
        ):
            key = (str(stage), str(item))
            if kind == "item_started":
                open_items[key] = float(t)
                delta = 1
            elif key in open_items:
                del open_items[key]
                delta = -1
            else:
                continue  # dropped while queued: it never held a worker
            busy[key[0]] = busy.get(key[0], 0) + delta
            rows.append((r.label, key[0], float(t) / 60.0, busy[key[0]]))
        for stage, n in busy.items():
            rows.append((r.label, stage, r.end / 60.0, n))
    return pd.DataFrame.from_records(rows, columns=["run", "stage", "minutes", "busy"])


def mean_busy(runs: Runs) -> pd.DataFrame:
    """Time-weighted mean of busy workers per stage over each whole run: columns
    ``run``, ``stage``, ``mean_busy``. The single number behind the timeline."""
    import pandas as pd

    items = labelled(runs)
    frame = occupancy_frame({r.label: r.events for r in items})
    rows = []
    for r in items:
        end = r.end / 60.0
        mine = frame[frame["run"] == r.label]
        for stage, part in mine.groupby("stage", sort=False):
            xs = [*part["minutes"], end]
            area = sum(b * (x1 - x0) for b, x0, x1 in zip(part["busy"], xs, xs[1:], strict=False))
            rows.append((r.label, str(stage), area / end if end > 0 else 0.0))
    return pd.DataFrame.from_records(rows, columns=["run", "stage", "mean_busy"])


def stage_timeline(runs: Runs, *, bins: int | None = 240, title: str | None = None) -> go.Figure:
    """Busy workers per stage over simulated time, stacked; a dict ``{label: run}``
    puts runs one above the other on a shared time axis (e.g. sync vs async).

    ``bins``: each run is cut into that many equal slices and each stage's busy
    workers averaged over each slice, so a long busy run stays readable;
    ``None`` draws every single change instead.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    if bins is not None and bins < 1:
        raise ValueError(f"bins must be >= 1 or None (got {bins!r})")
    items = labelled(runs)
    frame = occupancy_frame({r.label: r.events for r in items})
    stages = [s for s in STAGE_ORDER if s in set(frame["stage"])]
    stages += sorted(set(frame["stage"]) - set(stages))
    colours = {s: qualitative.Plotly[i % len(qualitative.Plotly)] for i, s in enumerate(stages)}
    fig = make_subplots(
        rows=len(items),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[esc(r.label) for r in items] if len(items) > 1 else None,
    )
    what = "busy" if bins is None else "busy on average"
    for row, r in enumerate(items, start=1):
        mine = frame[frame["run"] == r.label]
        xs, per_stage = _on_one_grid(mine, stages, r.end / 60.0, bins)
        for stage, ys in per_stage.items():
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"shape": "hv", "width": 0.5, "color": colours[stage]},
                    stackgroup=f"run{row}",
                    name=esc(stage),
                    legendgroup=esc(stage),
                    showlegend=row == 1,
                    hovertemplate=(
                        f"{esc(r.label)}: {esc(stage)}<br>%{{x:.2f}} simulated min"
                        f"<br>%{{y:.2f}} {what}<extra></extra>"
                    ),
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text="busy workers", row=row, col=1)
    fig.update_xaxes(title_text="simulated minutes", row=len(items), col=1)
    fig.update_layout(
        title=esc(title) if title else f"Stage occupancy over time{simulated_note(items)}",
        template="plotly_white",
        height=max(320, 260 * len(items)),
        hovermode="x unified",
    )
    return fig


def _on_one_grid(
    steps: pd.DataFrame, stages: list[str], end: float, bins: int | None
) -> tuple[list[float], dict[str, list[float]]]:
    """Every stage's busy count on the same x values: plotly stacks traces point by
    point, and traces with different x values stack as zero between their points."""
    import numpy as np

    parts = {s: steps[steps["stage"] == s] for s in stages}
    parts = {s: p for s, p in parts.items() if not p.empty}
    if bins is None:
        grid = np.unique(
            np.concatenate([[0.0], *(p["minutes"].to_numpy() for p in parts.values())])
        )
        out = {}
        for stage, p in parts.items():
            at = np.searchsorted(p["minutes"].to_numpy(), grid, side="right") - 1
            busy = p["busy"].to_numpy(dtype=float)
            out[stage] = [float(busy[i]) if i >= 0 else 0.0 for i in at]
        return [float(x) for x in grid], out
    edges = np.linspace(0.0, end, bins + 1) if end > 0 else np.array([0.0, 1.0])
    out = {}
    for stage, p in parts.items():
        # The running area under a step function is piecewise linear between its
        # changes, so interpolating it at the slice edges is exact.
        x = np.concatenate([[0.0], p["minutes"].to_numpy(dtype=float), [max(end, edges[-1])]])
        y = np.concatenate([[0.0], p["busy"].to_numpy(dtype=float)])
        area = np.concatenate([[0.0], np.cumsum(y * np.diff(x))])
        at_edges = np.interp(edges, x, area)
        means = [float(v) for v in np.diff(at_edges) / np.diff(edges)]
        out[stage] = [*means, means[-1]]  # the last slice drawn up to the end
    return [float(e) for e in edges], out
