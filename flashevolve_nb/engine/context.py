"""What a stage function may touch while it works on one item.

The context is how stages talk to the run without reaching into it: LLM calls
go through :meth:`StageContext.chat` so that every call becomes a pair of
events with its tokens; metric calls and proposals are counted against the
budget; ids and randomness come from the run so that a seed reproduces it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flashevolve_nb.engine.budget import HardCap, Reservation
from flashevolve_nb.engine.events import Event, LLMCallFinished, LLMCallStarted, LLMRetry
from flashevolve_nb.engine.workload import ModelRoles
from flashevolve_nb.llm.protocol import LLM, Completion, Message, RetryNotice, retry_listener

if TYPE_CHECKING:
    from flashevolve_nb.engine.pipeline import Pipeline
    from flashevolve_nb.engine.pool import Pool
    from flashevolve_nb.engine.speculation import Speculation
    from flashevolve_nb.engine.workload import Workload

__all__ = ["StageContext"]


class StageContext:
    def __init__(self, pipeline: Pipeline, stage: str, step: int, rng_key: str) -> None:
        self._pipeline = pipeline
        self.stage = stage
        self.step = step
        self.rng = random.Random(f"{pipeline.seed}:{rng_key}")
        self.tokens = 0
        self.outcome = ""

    def end_step(self, outcome: str) -> None:
        """Say why this stage ends the step (it returns no items): shown in StepFinished."""
        self.outcome = outcome

    @property
    def pool(self) -> Pool:
        return self._pipeline.pool

    @property
    def speculation(self) -> Speculation:
        """The run's speculation settings and bookkeeping (alpha, speculative validation)."""
        return self._pipeline.speculation

    @property
    def workload(self) -> Workload:
        """The run's workload (a policy checks it for a capability, e.g. ``Rebasing``)."""
        return self._pipeline.workload

    def now(self) -> float:
        return self._pipeline.clock.now()

    def llm_for(self, role: str) -> LLM:
        """The workload's model for ``role`` (``"repair"``...), for policies that call one."""
        workload = self._pipeline.workload
        if not isinstance(workload, ModelRoles):
            raise LookupError(
                f"the workload {workload.name!r} names no model for {role!r}; "
                "give the policy one, e.g. make_policy('reflective', llm=...)"
            )
        return workload.llm_for(role)

    def emit(self, event: Event) -> None:
        self._pipeline.bus.emit(event)

    def new_id(self, prefix: str = "a") -> str:
        return self._pipeline.new_id(prefix)

    def count_metric_calls(self, n: int = 1) -> None:
        self._pipeline.budget.metric_calls += n

    def reserve_metric_calls(self, n: int) -> Reservation:
        """Promise ``n`` metric calls before making them; ``spend`` them as they end.

        What is still unspent when the step ends goes back to the budget (a step's
        speculative tail may make its calls after the stage that reserved them
        returned). Reserving is what keeps a metric-call budget from being overshot
        by every stage run in flight (see :mod:`flashevolve_nb.engine.budget`).
        """
        return self._pipeline.reserve_metric_calls(self.step, n)

    @property
    def metric_cap(self) -> HardCap | None:
        """The run's metric budget in hard-cap mode (``Budget(hard_metric_cap=True)``), for
        a workload that reserves a step's worst case up front; None in the default mode.
        Calls spent through it are counted on the run; what a step still holds returns
        when the step ends."""
        p = self._pipeline
        return p.budget.hard_cap if p.config.budget.hard_metric_cap else None

    def count_proposal(self) -> None:
        self._pipeline.budget.proposals += 1

    async def chat(
        self, llm: LLM, messages: Sequence[Message], *, role: str, **params: Any
    ) -> Completion:
        """Call ``llm`` and record the call (tokens, latency, failure) as events."""
        p = self._pipeline
        call_id = p.next_call_id()
        p.requests_in_flight += 1
        p.bus.emit(
            LLMCallStarted(
                t=p.clock.now(), call_id=call_id, role=role, stage=self.stage, step=self.step
            )
        )
        ok = False
        completion: Completion | None = None
        error = ""
        outcome = "error"

        def retried(n: RetryNotice) -> None:
            p.bus.emit(
                LLMRetry(
                    t=p.clock.now(), call_id=call_id, role=role, stage=self.stage,
                    step=self.step, backend=n.backend, endpoint=n.endpoint, attempt=n.attempt,
                    cause=n.cause, status=n.status, delay=n.delay,
                )
            )  # fmt: skip

        try:
            with retry_listener(retried):
                completion = await llm.chat(messages, **params)
            ok = True
            p.llm_error_streak = 0
            return completion
        except asyncio.CancelledError:
            # The run was stopped or its deadline came: not a backend failure.
            error, outcome = "cancelled", "cancelled"
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            p.llm_error_streak += 1
            raise
        finally:
            p.requests_in_flight -= 1
            usage = completion.usage if completion else None
            if usage is not None:
                self.tokens += usage.total_tokens
            p.bus.emit(
                LLMCallFinished(
                    t=p.clock.now(),
                    call_id=call_id,
                    role=role,
                    stage=self.stage,
                    step=self.step,
                    ok=ok,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                    latency=completion.latency if completion else 0.0,
                    finish_reason=completion.finish_reason if completion else outcome,
                    error=error,
                )
            )
