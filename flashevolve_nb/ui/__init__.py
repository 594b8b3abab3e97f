"""The notebook dashboard (ipywidgets + plotly): ``run.dashboard()``.

The only part of flashevolve_nb that imports Jupyter modules; nothing else
imports it. It reads ``Run.snapshot()`` and events, and acts only through
``Run`` methods.
"""

from __future__ import annotations

# plotly imports pandas lazily, from whichever thread first builds a figure;
# the dashboard's refresher thread doing so while a cell imports pandas left
# the cell with a half-initialised module. Import it here, on the thread that
# calls run.dashboard(), before any refresher exists.
import pandas  # noqa: F401

from flashevolve_nb.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
