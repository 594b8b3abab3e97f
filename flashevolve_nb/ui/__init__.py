"""The notebook dashboard: ``run.dashboard()``, ``open_run(dir).dashboard()``, ``replay(result)``.

The only part of flashevolve_nb that imports Jupyter modules; nothing else
imports it. One anywidget (front-end sources in ``widgets/``, the built
bundle in ``static/``) renders a model of the run in the browser; Python
keeps that model and answers the page's commands through ``Run`` methods.
"""

from __future__ import annotations

from flashevolve_nb.ui.dashboard import Dashboard
from flashevolve_nb.ui.report import write_report
from flashevolve_nb.ui.source import LiveSource, RecordedSource, replay

__all__ = ["Dashboard", "LiveSource", "RecordedSource", "replay", "write_report"]
