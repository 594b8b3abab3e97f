"""A one-line progress bar for terminal runs, fed by events, and the clock's warning.

It keeps counters on every event (cheap) and redraws at most a few times per
real second, so it never slows the pipeline it reports on.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from flashevolve_nb.clock_lag import ClockBehind
from flashevolve_nb.engine.events import (
    Admitted,
    Event,
    LLMCallFinished,
    LLMCallStarted,
    ProposalMade,
    RunFinished,
)

__all__ = ["ClockWarning", "ProgressBar"]


class ProgressBar:
    def __init__(
        self,
        label: str,
        total_sim_seconds: float,
        *,
        stream: TextIO | None = None,
        width: int = 24,
        interval: float = 0.2,
    ) -> None:
        self.label = label
        self.total = total_sim_seconds
        self.stream = stream or sys.stderr
        self.width = width
        self.interval = interval
        self._last_draw = 0.0
        self._t = 0.0
        self._proposals = 0
        self._accepted = 0
        self._best = float("nan")
        self._inflight = 0
        self._tty = self.stream.isatty()

    def __call__(self, e: Event) -> None:
        self._t = max(self._t, e.t)
        if isinstance(e, LLMCallStarted):
            self._inflight += 1
        elif isinstance(e, LLMCallFinished):
            self._inflight -= 1
        elif isinstance(e, ProposalMade):
            self._proposals += 1
        elif isinstance(e, Admitted):
            if e.origin != "seed":
                self._accepted += 1
            if self._best != self._best or e.score > self._best:
                self._best = e.score
        if isinstance(e, RunFinished):
            self._draw(final=True)
            return
        now = time.monotonic()
        if now - self._last_draw >= (self.interval if self._tty else 5.0):
            self._last_draw = now
            self._draw()

    def _draw(self, final: bool = False) -> None:
        frac = min(1.0, self._t / self.total) if self.total > 0 else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        # no score before the seed's validation is admitted: a dash, not "nan"
        best = "  -  " if self._best != self._best else f"{self._best:.3f}"
        line = (
            f"{self.label} [{bar}] {self._t / 60:5.1f}/{self.total / 60:.0f} sim-min  "
            f"proposals {self._proposals:4d}  accepted {self._accepted:3d}  "
            f"best {best}  in-flight {self._inflight:3d}"
        )
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class ClockWarning:
    """Says so as soon as a run is far behind on the real clock (``ClockBehind``, mid-run).

    The verdict at the end is the summary's; this one is for a long run, whose
    person should not wait for the end to learn its figures are degraded.
    """

    def __init__(
        self, label: str = "", stream: TextIO | None = None, *, fix: str | None = None
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.fix = fix
        """What to do about it, in the words of the command (the demo's flags by default)."""

    def __call__(self, e: Event) -> None:
        if isinstance(e, ClockBehind) and not e.final:
            prefix = f"{self.label}: " if self.label else ""
            # a new line first: a progress bar may be mid-line on the same stream
            report = e.report
            text = report.warning() if self.fix is None else report.warning(self.fix)
            self.stream.write(f"\n{prefix}{text} (mid-run)\n")
            self.stream.flush()
