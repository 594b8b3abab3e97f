"""flashevolve_nb: fast, observable, steerable asynchronous LLM-based evolution.

Importing the package pulls in no Jupyter module: the dashboard lives in
``flashevolve_nb.ui`` and is imported only when asked for.
"""

from __future__ import annotations

from flashevolve_nb.engine import (
    Artifact,
    Budget,
    Origin,
    Pipeline,
    PipelineConfig,
    RunResult,
    RunStats,
)

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "Budget",
    "Origin",
    "Pipeline",
    "PipelineConfig",
    "RunResult",
    "RunStats",
    "__version__",
]
