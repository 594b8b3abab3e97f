"""A backend that fails instantly must not make the head spin."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb.clock import Clock
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, StageContext, WorkItem
from flashevolve_nb.engine.events import StageControl, StepStarted
from flashevolve_nb.llm.protocol import Completion, LLMError, Message, Usage


class Flaky:
    name = "flaky"
    simulated = True

    def __init__(self) -> None:
        self.down = True

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        if self.down:
            raise LLMError("connection refused")
        await asyncio.sleep(0.001)
        return Completion("ok", Usage(1, 1), 0.001)


class CallsAnLLM(ToyWorkload):
    def __init__(self, llm: Flaky) -> None:
        super().__init__(durations={"a": 0.0, "b": 0.0}, workers=4)
        self.llm = llm

    def stages(self):  # type: ignore[no-untyped-def]
        specs = list(super().stages())
        inner = specs[0].fn

        async def first(item: WorkItem, ctx: StageContext) -> Sequence[WorkItem]:
            try:
                await ctx.chat(self.llm, [{"role": "user", "content": "hi"}], role="task")
            except LLMError:
                ctx.end_step("the model call failed")
                return []
            return await inner(item, ctx)

        from dataclasses import replace

        return [replace(specs[0], fn=first), *specs[1:]]


@pytest.mark.asyncio
async def test_instant_failures_back_off_and_recovery_resumes() -> None:
    llm = Flaky()
    pipe = Pipeline(
        CallsAnLLM(llm),
        PipelineConfig(depth=8, budget=Budget(max_sim_seconds=400)),
        clock=Clock(2000.0),
    )
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(100 / 2000)  # 100 simulated seconds of a dead backend
    down_steps = sum(isinstance(e, StepStarted) for e in pipe.recorder.events)
    llm.down = False
    result = await task
    backoffs = [e for e in result.events if isinstance(e, StageControl) and e.action == "backoff"]
    # Without the back-off the head starts thousands of failing steps in no time.
    assert down_steps < 60
    assert backoffs and all(e.source == "engine" for e in backoffs)
    waits = [float(e.value.split("s:")[0]) for e in backoffs]
    assert waits == sorted(waits) and waits[-1] > waits[0]
    # Once the backend answers, steps are admitted again.
    assert result.stats.accepted > 0
