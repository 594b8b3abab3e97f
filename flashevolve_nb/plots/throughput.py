"""Throughput per simulated minute, compared across runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flashevolve_nb.plots._source import Runs, esc, labelled, simulated_note

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["rates", "throughput"]

_COUNTED = {
    "proposals/min": "proposal_made",
    "accepted/min": "admitted",
    "validations/min": "validation_done",
}


def rates(runs: Runs) -> pd.DataFrame:
    """One row per run: ``minutes`` (simulated), the counts of proposals, accepted
    artifacts (the seed left out) and validation sweeps, and each per simulated minute."""
    import pandas as pd

    rows = []
    for r in labelled(runs):
        ev = r.events
        minutes = r.end / 60.0
        counts = {
            "proposals": int((ev["kind"] == "proposal_made").sum()),
            "accepted": int(((ev["kind"] == "admitted") & (ev.get("origin") != "seed")).sum()),
            "validations": int((ev["kind"] == "validation_done").sum()),
        }
        row: dict[str, object] = {"run": r.label, "minutes": round(minutes, 2), **counts}
        for name, count in counts.items():
            row[f"{name}/min"] = count / minutes if minutes > 0 else 0.0
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def throughput(runs: Runs, *, title: str | None = None) -> go.Figure:
    """Grouped bars: proposals, accepted artifacts and validation sweeps per
    simulated minute, one colour per run."""
    import plotly.graph_objects as go

    items = labelled(runs)
    table = rates({r.label: r.events for r in items})
    fig = go.Figure()
    names = list(_COUNTED)
    for _, row in table.iterrows():
        label = esc(row["run"])
        fig.add_trace(
            go.Bar(
                x=names,
                y=[float(row[n]) for n in names],
                name=label,
                text=[f"{float(row[n]):.2f}" for n in names],
                textposition="outside",
                hovertemplate=f"{label}<br>%{{x}}: %{{y:.2f}}<extra></extra>",
            )
        )
    fig.update_layout(
        barmode="group",
        title=esc(title) if title else f"Throughput per simulated minute{simulated_note(items)}",
        yaxis_title="per simulated minute",
        template="plotly_white",
    )
    return fig
