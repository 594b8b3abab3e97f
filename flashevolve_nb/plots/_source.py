"""What a plot is drawn from: one or several runs' events, each under a label."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Labelled", "RunLike", "Runs", "esc", "labelled", "simulated_note"]

RunLike: TypeAlias = Any
"""A ``RunResult``, a ``Run`` (its ``events`` property), or an events DataFrame."""
Runs: TypeAlias = "RunLike | Mapping[str, RunLike]"


@dataclass(frozen=True)
class Labelled:
    """One run's events under the name a figure shows for it."""

    label: str
    events: pd.DataFrame

    @property
    def simulated(self) -> bool:
        """True when the run said its backend is the simulator."""
        started = self.events[self.events["kind"] == "run_started"]
        if started.empty or "backend" not in started:
            return False
        return all("simulated" in str(b) for b in started["backend"])

    @property
    def end(self) -> float:
        """Simulated seconds at which the run ended (its last event if it has not)."""
        if self.events.empty:
            return 0.0
        return float(self.events["t"].max())


def events_of(run: RunLike) -> pd.DataFrame:
    import pandas as pd

    if isinstance(run, pd.DataFrame):
        frame = run
    elif callable(getattr(run, "events_frame", None)):
        frame = run.events_frame()
    elif isinstance(getattr(run, "events", None), pd.DataFrame):
        frame = run.events
    else:
        raise TypeError(
            f"cannot plot a {type(run).__name__}: pass a RunResult, a Run or an events "
            "DataFrame (run.events / result.events_frame()), or a dict {label: run}"
        )
    missing = {"t", "kind"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"the events frame lacks column(s) {sorted(missing)}; pass result.events_frame()"
        )
    return frame


def labelled(runs: Runs, default: str = "run") -> list[Labelled]:
    """The runs to draw, in the order given; one unnamed run is called ``default``."""
    if isinstance(runs, Mapping):
        if not runs:
            raise ValueError("no runs to plot: the mapping is empty")
        return [Labelled(str(k), events_of(v)) for k, v in runs.items()]
    return [Labelled(default, events_of(runs))]


def simulated_note(runs: list[Labelled]) -> str:
    """A title suffix: simulated results say so (SIMULATOR.md)."""
    flags = [r.simulated for r in runs]
    if all(flags):
        return " (simulated)"
    if any(flags):
        return " (some runs simulated)"
    return ""


def esc(text: object) -> str:
    """Plotly renders a subset of HTML in hover text and titles: escape anything we pass."""
    return html.escape(str(text), quote=True)
