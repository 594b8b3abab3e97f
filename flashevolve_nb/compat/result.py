"""What ``flashevolve_nb.optimize`` returns: ``gepa``'s result fields, plus our run record.

The fields and their meaning are those of ``gepa.core.result.GEPAResult``
(candidates in admission order, parents by index, mean and per-example
validation scores keyed by the loader's ids, the per-example fronts...);
:meth:`OptimizeResult.to_gepa` makes the real ``GEPAResult`` when ``gepa`` is
installed and :meth:`OptimizeResult.to_dict` writes ``GEPAResult.to_dict()``'s
format without it. ``best_outputs_valset`` is never filled.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flashevolve_nb.compat.state import GepaStateView
    from flashevolve_nb.engine.result import RunResult

__all__ = ["OptimizeResult"]

_SCHEMA_VERSION = 2
"""The version of ``GEPAResult.to_dict()``'s format that :meth:`OptimizeResult.to_dict` writes."""


@dataclass(frozen=True)
class OptimizeResult:
    candidates: tuple[dict[str, str], ...]
    parents: tuple[tuple[int | None, ...], ...]
    val_aggregate_scores: tuple[float, ...]
    val_subscores: tuple[dict[Any, float], ...]
    per_val_instance_best_candidates: Mapping[Any, frozenset[int]]
    discovery_eval_counts: tuple[int, ...]
    total_metric_calls: int
    num_full_val_evals: int
    seed: int
    run_dir: str | None = None
    artifact_ids: tuple[str, ...] = ()
    """Our id of each candidate (``run.pool``, the events and the dashboard use these)."""
    finish_reason: str = ""
    wall_seconds: float = 0.0
    run: RunResult | None = field(default=None, repr=False, compare=False)
    """Our record of the run: events, statistics, the pool."""

    @classmethod
    def from_state(
        cls,
        state: GepaStateView,
        *,
        seed: int,
        run_dir: str | None = None,
        finish_reason: str = "",
        wall_seconds: float = 0.0,
        run: RunResult | None = None,
    ) -> OptimizeResult:
        return cls(
            candidates=tuple(dict(c) for c in state.program_candidates),
            parents=tuple(tuple(p) for p in state.parent_program_for_candidate),
            val_aggregate_scores=tuple(state.program_full_scores_val_set),
            val_subscores=tuple(dict(s) for s in state.prog_candidate_val_subscores),
            per_val_instance_best_candidates={
                k: frozenset(v) for k, v in state.program_at_pareto_front_valset.items()
            },
            discovery_eval_counts=tuple(state.num_metric_calls_by_discovery),
            total_metric_calls=state.total_num_evals,
            num_full_val_evals=state.num_full_ds_evals,
            seed=seed,
            run_dir=run_dir,
            artifact_ids=tuple(state.artifact_ids),
            finish_reason=finish_reason,
            wall_seconds=wall_seconds,
            run=run,
        )

    # ---- gepa's convenience properties -------------------------------------
    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def num_val_instances(self) -> int:
        return len(self.per_val_instance_best_candidates)

    @property
    def best_idx(self) -> int:
        """The candidate with the best mean validation score (the earliest among equals)."""
        scores = self.val_aggregate_scores
        return max(range(len(scores)), key=lambda i: scores[i])

    @property
    def best_candidate(self) -> dict[str, str]:
        return dict(self.candidates[self.best_idx])

    @property
    def best_score(self) -> float:
        return self.val_aggregate_scores[self.best_idx]

    # ---- conversions -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``GEPAResult.to_dict()``'s format: ``GEPAResult.from_dict`` reads it back."""
        return {
            "candidates": [dict(c) for c in self.candidates],
            "parents": [list(p) for p in self.parents],
            "val_aggregate_scores": list(self.val_aggregate_scores),
            "val_subscores": [dict(s) for s in self.val_subscores],
            "best_outputs_valset": None,
            "per_val_instance_best_candidates": {
                k: sorted(v) for k, v in self.per_val_instance_best_candidates.items()
            },
            "val_aggregate_subscores": None,
            "per_objective_best_candidates": None,
            "objective_pareto_front": None,
            "discovery_eval_counts": list(self.discovery_eval_counts),
            "total_metric_calls": self.total_metric_calls,
            "num_full_val_evals": self.num_full_val_evals,
            "run_dir": self.run_dir,
            "seed": self.seed,
            "_str_candidate_key": None,
            "best_idx": self.best_idx,
            "validation_schema_version": _SCHEMA_VERSION,
        }

    def to_gepa(self) -> Any:
        """This result as ``gepa.core.result.GEPAResult`` (needs the ``gepa`` package)."""
        try:
            module = importlib.import_module("gepa.core.result")
        except ImportError:
            raise ImportError(
                "to_gepa() makes a gepa.core.result.GEPAResult and needs the gepa package: "
                "pip install 'flashevolve_nb[gepa]' (to_dict() needs nothing)"
            ) from None
        return module.GEPAResult(
            candidates=[dict(c) for c in self.candidates],
            parents=[list(p) for p in self.parents],
            val_aggregate_scores=list(self.val_aggregate_scores),
            val_subscores=[dict(s) for s in self.val_subscores],
            per_val_instance_best_candidates={
                k: set(v) for k, v in self.per_val_instance_best_candidates.items()
            },
            discovery_eval_counts=list(self.discovery_eval_counts),
            total_metric_calls=self.total_metric_calls,
            num_full_val_evals=self.num_full_val_evals,
            run_dir=self.run_dir,
            seed=self.seed,
        )

    def __repr__(self) -> str:
        return (
            f"OptimizeResult({self.num_candidates} candidates, best_idx={self.best_idx}, "
            f"best_score={self.best_score:.4f}, total_metric_calls={self.total_metric_calls}, "
            f"finish_reason={self.finish_reason!r})"
        )
