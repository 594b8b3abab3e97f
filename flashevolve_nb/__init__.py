"""flashevolve_nb: fast, observable, steerable asynchronous LLM-based evolution.

Importing the package pulls in no Jupyter module: the dashboard lives in
``flashevolve_nb.ui`` and is imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flashevolve_nb.engine import (
    Artifact,
    Budget,
    Origin,
    Pipeline,
    PipelineConfig,
    RunResult,
    RunStats,
)
from flashevolve_nb.errors import FlashEvolveError

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "Budget",
    "FlashEvolveError",
    "Origin",
    "Pipeline",
    "PipelineConfig",
    "Run",
    "RunResult",
    "RunStats",
    "__version__",
    "open_run",
    "optimize",
    "optimize_async",
    "start",
]

if TYPE_CHECKING:
    from flashevolve_nb.compat import optimize, optimize_async
    from flashevolve_nb.runtime import Run, start
    from flashevolve_nb.store import open_run

# Names loaded on first use (name -> module), so importing the package stays light.
_LAZY = {
    "Run": "flashevolve_nb.runtime",
    "start": "flashevolve_nb.runtime",
    # gepa.optimize's arguments on our engine; gepa itself stays unimported until used
    "optimize": "flashevolve_nb.compat",
    "optimize_async": "flashevolve_nb.compat",
    # a stored run, read back (finished, crashed or running elsewhere)
    "open_run": "flashevolve_nb.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flashevolve_nb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
