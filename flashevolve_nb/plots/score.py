"""Best validation score over simulated time, one line per run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashevolve_nb.plots._source import Runs, esc, labelled, simulated_note

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["best_score_frame", "score_over_time"]


def best_score_frame(runs: Runs) -> pd.DataFrame:
    """One row per admission: ``run``, ``minutes`` (simulated), ``artifact_id``,
    ``origin``, ``score`` and ``best`` (the best score so far in that run)."""
    import pandas as pd

    parts = []
    for r in labelled(runs):
        ev = r.events
        adm = ev[ev["kind"] == "admitted"]
        part = pd.DataFrame(
            {
                "run": r.label,
                "minutes": adm["t"].astype(float) / 60.0,
                "artifact_id": adm["artifact_id"].astype(str),
                "origin": adm["origin"].astype(str),
                "score": adm["score"].astype(float),
            }
        )
        part["best"] = part["score"].cummax()
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    return frame.reset_index(drop=True)


def score_over_time(runs: Runs, *, title: str | None = None) -> go.Figure:
    """Best validation score against simulated minutes; a dict ``{label: run}``
    overlays several runs (e.g. one per staleness policy, same seed)."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    items = labelled(runs)
    fig = go.Figure()
    for i, r in enumerate(items):
        colour = qualitative.Plotly[i % len(qualitative.Plotly)]
        rows = best_score_frame({r.label: r.events})
        if rows.empty:
            continue
        # Hold the last best until the run ended, so runs of equal length line up.
        xs = [*rows["minutes"], r.end / 60.0]
        ys = [*rows["best"], float(rows["best"].iloc[-1])]
        ids = [esc(a) for a in rows["artifact_id"]] + ["(end of run)"]
        name = esc(r.label)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"shape": "hv", "color": colour},
                name=name,
                customdata=ids,
                hovertemplate=(
                    f"{name}<br>%{{x:.1f}} simulated min<br>best %{{y:.3f}}"
                    "<br>%{customdata}<extra></extra>"
                ),
            )
        )
        news = rows[rows["best"].diff().fillna(1.0) > 0]
        fig.add_trace(
            go.Scatter(
                x=news["minutes"],
                y=news["best"],
                mode="markers",
                name=f"{name}: new best",
                showlegend=False,
                marker={"size": 7, "color": colour},
                customdata=[esc(a) for a in news["artifact_id"]],
                hovertemplate=(
                    f"{name}<br>new best %{{customdata}}<br>%{{y:.3f}} "
                    "at %{x:.1f} simulated min<extra></extra>"
                ),
            )
        )
    fig.update_layout(
        title=esc(title) if title else f"Best validation score over time{simulated_note(items)}",
        xaxis_title="simulated minutes",
        yaxis_title="best validation score",
        hovermode="closest",
        template="plotly_white",
    )
    return fig
