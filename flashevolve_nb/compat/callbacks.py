"""``gepa`` callbacks, called from our runs.

An object following ``gepa``'s callback protocol (``gepa.core.callbacks``:
``on_optimization_start``, ``on_iteration_start``, ``on_candidate_accepted``...,
every method optional) gets the same event dicts, with the same keys, at the
equivalent moments. An iteration is one of our evolution steps and keeps its
number. What differs, because steps run side by side:

- Events of different iterations interleave. Within one iteration the order
  is ``gepa``'s: ``on_iteration_start``, ``on_candidate_selected``,
  ``on_minibatch_sampled``, the parent's ``on_evaluation_start`` /
  ``on_evaluation_end``, ``on_reflective_dataset_built``,
  ``on_proposal_start``, ``on_proposal_end``, the child's evaluation, then
  ``on_candidate_rejected`` or ``on_pareto_front_updated``,
  ``on_valset_evaluated``, ``on_candidate_accepted``, and last
  ``on_iteration_end``. ``on_budget_updated`` follows every adapter call
  (an evaluation may be split into several, see ``split_batches``).
  ``on_optimization_start`` comes first and ``on_optimization_end`` last.
- ``state`` (in iteration and end events) is a
  :class:`~flashevolve_nb.compat.state.GepaStateView`, read-only, with
  ``gepa``'s attribute names; ``state.i`` is the latest iteration started
  minus one, while other iterations may still be running.
- A candidate index is given when the candidate is admitted to the pool, in
  admission order, which can differ from the order iterations started.
- A validated child that a staleness policy discards before admission gets
  ``on_candidate_rejected`` with the policy's reason; a failed iteration gets
  ``on_error`` (``will_continue`` true unless ``raise_on_exception``) before
  its ``on_iteration_end``.
- Steps our engine starts by itself (a person's proposal, a ``meta`` policy's
  distillation) are iterations too: they get ``on_iteration_start`` but no
  selection or sampling events.
- ``on_state_saved`` fires when the run writes its ``run_dir``, after each
  admission; ``on_merge_*`` never fire (no merge proposer).

Callbacks run synchronously on the run's event loop, as in ``gepa`` they run
on its only thread: a slow callback slows the run. One that raises is logged
and skipped, as ``gepa`` does; it never stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["CALLBACK_METHODS", "CallbackBridge"]

log = logging.getLogger(__name__)

CALLBACK_METHODS = (
    "on_optimization_start",
    "on_optimization_end",
    "on_iteration_start",
    "on_iteration_end",
    "on_candidate_selected",
    "on_minibatch_sampled",
    "on_evaluation_start",
    "on_evaluation_end",
    "on_evaluation_skipped",
    "on_valset_evaluated",
    "on_reflective_dataset_built",
    "on_proposal_start",
    "on_proposal_end",
    "on_candidate_accepted",
    "on_candidate_rejected",
    "on_merge_attempted",
    "on_merge_accepted",
    "on_merge_rejected",
    "on_pareto_front_updated",
    "on_state_saved",
    "on_budget_updated",
    "on_error",
)
"""The methods of ``gepa``'s ``GEPACallback`` protocol."""


class CallbackBridge:
    """Calls each callback's ``method(event)`` where it has one; a raising callback is logged."""

    def __init__(self, callbacks: Sequence[Any] | None = None) -> None:
        self.callbacks = list(callbacks or ())
        for cb in self.callbacks:
            if not any(callable(getattr(cb, m, None)) for m in CALLBACK_METHODS):
                raise TypeError(
                    f"{cb!r} has none of gepa's callback methods ({', '.join(CALLBACK_METHODS[:3])}"
                    ", ...); a callback implements some of gepa.core.callbacks.GEPACallback"
                )

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def notify(self, method: str, **event: Any) -> None:
        if method not in CALLBACK_METHODS:
            raise ValueError(f"{method!r} is not a gepa callback method")
        for cb in self.callbacks:
            fn = getattr(cb, method, None)
            if fn is None:
                continue
            try:
                fn(dict(event))
            except Exception as exc:
                log.warning("callback %r failed on %s: %r", cb, method, exc)
