"""A ``gepa``-shaped view of a run: what ``gepa``'s callbacks, stoppers and selectors read.

``gepa`` hands its callbacks and stop conditions its ``GEPAState`` and numbers
candidates by admission order. This view keeps the same attribute names
(``program_candidates``, ``parent_program_for_candidate``,
``prog_candidate_val_subscores``, ``program_full_scores_val_set``,
``total_num_evals``, ``get_pareto_front_mapping()`` ...) over our pool, so
observers and stoppers written for ``gepa`` read it unchanged, and so does a
``gepa`` candidate selector object (``select_candidate_idx(state)``).

It is the ``instance`` frontier only (one front per validation example), it
holds no evaluation cache and no best outputs, and it is written by the run
alone: callbacks get it to read. Under asynchrony ``i`` is the latest
iteration started minus one (``gepa``'s convention), while several other
iterations may still be running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GepaStateView"]


class GepaStateView:
    """Candidates by index with their validation scores and fronts, ``gepa``'s names."""

    frontier_type = "instance"
    evaluation_cache = None
    best_outputs_valset = None

    def __init__(self, seed_candidate: Mapping[str, str], val_ids: Sequence[Any]) -> None:
        self.val_ids: tuple[Any, ...] = tuple(val_ids)
        self.list_of_named_predictors: list[str] = list(seed_candidate)
        self.program_candidates: list[dict[str, str]] = []
        self.parent_program_for_candidate: list[list[int | None]] = []
        self.prog_candidate_val_subscores: list[dict[Any, float]] = []
        self.prog_candidate_objective_scores: list[dict[str, float]] = []
        self.num_metric_calls_by_discovery: list[int] = []
        self.pareto_front_valset: dict[Any, float] = {}
        self.program_at_pareto_front_valset: dict[Any, set[int]] = {}
        self.objective_pareto_front: dict[str, float] = {}
        self.program_at_pareto_front_objectives: dict[str, set[int]] = {}
        self.full_program_trace: list[dict[str, Any]] = []
        self.adapter_state: dict[str, Any] = {}
        self.i = -1
        self.total_num_evals = 0
        self.num_full_ds_evals = 0
        self.artifact_ids: list[str] = []
        self._index: dict[str, int] = {}

    # ---- what the run writes ---------------------------------------------
    def add(
        self,
        artifact_id: str,
        candidate: Mapping[str, str],
        parents: Sequence[str],
        scores: Sequence[float],
        discovered_at: int,
    ) -> tuple[int, list[int], list[int]]:
        """Add an admitted candidate: its index, the front after, and who left the front."""
        before = self._on_front()
        idx = len(self.program_candidates)
        self._index[artifact_id] = idx
        self.artifact_ids.append(artifact_id)
        self.program_candidates.append(dict(candidate))
        known = [self._index[p] for p in parents if p in self._index]
        self.parent_program_for_candidate.append(list(known) if known else [None])
        self.prog_candidate_val_subscores.append(dict(zip(self.val_ids, scores, strict=True)))
        self.prog_candidate_objective_scores.append({})
        self.num_metric_calls_by_discovery.append(discovered_at)
        for val_id, s in zip(self.val_ids, scores, strict=True):
            best = self.pareto_front_valset.get(val_id, float("-inf"))
            if s > best:
                self.pareto_front_valset[val_id] = s
                self.program_at_pareto_front_valset[val_id] = {idx}
            elif s == best:
                self.program_at_pareto_front_valset[val_id].add(idx)
        after = self._on_front()
        return idx, sorted(after), sorted(before - after)

    def _on_front(self) -> set[int]:
        return set().union(*self.program_at_pareto_front_valset.values())

    # ---- lookups -----------------------------------------------------------
    def index_of(self, artifact_id: str) -> int | None:
        return self._index.get(artifact_id)

    def artifact_id(self, idx: int) -> str:
        return self.artifact_ids[idx]

    # ---- gepa's read API -----------------------------------------------------
    def get_program_average_val_subset(self, program_idx: int) -> tuple[float, int]:
        scores = self.prog_candidate_val_subscores[program_idx]
        if not scores:
            return float("-inf"), 0
        return sum(scores.values()) / len(scores), len(scores)

    @property
    def program_full_scores_val_set(self) -> list[float]:
        return [
            self.get_program_average_val_subset(i)[0]
            for i in range(len(self.prog_candidate_val_subscores))
        ]

    @property
    def per_program_tracked_scores(self) -> list[float]:
        return self.program_full_scores_val_set

    @property
    def valset_evaluations(self) -> dict[Any, list[int]]:
        out: dict[Any, list[int]] = {}
        for idx, scores in enumerate(self.prog_candidate_val_subscores):
            for val_id in scores:
                out.setdefault(val_id, []).append(idx)
        return out

    def get_pareto_front_mapping(self) -> dict[Any, set[int]]:
        return {k: set(v) for k, v in self.program_at_pareto_front_valset.items()}

    def is_consistent(self) -> bool:
        n = len(self.program_candidates)
        return all(
            len(x) == n
            for x in (
                self.parent_program_for_candidate,
                self.prog_candidate_val_subscores,
                self.prog_candidate_objective_scores,
                self.num_metric_calls_by_discovery,
            )
        )

    def __repr__(self) -> str:
        return (
            f"GepaStateView({len(self.program_candidates)} candidates, "
            f"total_num_evals={self.total_num_evals}, i={self.i})"
        )
