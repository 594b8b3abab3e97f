"""``max_metric_calls`` as a hard cap: the hard-cap mode of :mod:`flashevolve_nb.engine.budget`.

Kept as a name for code that imported it; the budget itself is
:class:`flashevolve_nb.engine.budget.HardCap`, the run's one metric count.
"""

from __future__ import annotations

from flashevolve_nb.engine.budget import HardCap

__all__ = ["MetricBudget"]

MetricBudget = HardCap
"""``MetricBudget(limit)``: a hard cap of ``limit`` metric calls (None: no limit)."""
