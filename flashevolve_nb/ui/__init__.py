"""The notebook dashboard (ipywidgets + plotly): ``run.dashboard()``.

The only part of flashevolve_nb that imports Jupyter modules; nothing else
imports it. It reads ``Run.snapshot()`` and events, and acts only through
``Run`` methods.
"""

from __future__ import annotations

from flashevolve_nb.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
