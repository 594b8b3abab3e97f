"""Invalid configuration fails at construction, naming the field."""

from __future__ import annotations

import pytest
from toy import ToyWorkload

from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig


def test_invalid_configs_fail_fast_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="depth"):
        PipelineConfig(depth=0)
    with pytest.raises(ValueError, match="mode"):
        PipelineConfig(mode="parallel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="staleness policy"):
        PipelineConfig(policy="sometimes")
    with pytest.raises(ValueError, match="unknown stage"):
        Pipeline(ToyWorkload(), PipelineConfig(workers={"zz": 2}))
    with pytest.raises(ValueError, match="decision point"):
        Pipeline(ToyWorkload(), PipelineConfig(decision_points=("nowhere",)))
    with pytest.raises(ValueError, match="max_metric_calls"):
        Budget(max_metric_calls=0)
