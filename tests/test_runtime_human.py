"""A person's artifact in a GEPA run: submit, replace, drop, on a virtual clock (looptime)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Artifact, Origin, Pipeline, RunResult
from flashevolve_nb.engine.events import (
    Admitted,
    GateResult,
    HumanSubmitted,
    ItemStarted,
    LLMCallStarted,
    ProposalMade,
    QueueEdited,
    StepFinished,
    ValidationDone,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]

SMALL = {"n_train": 30, "n_val": 20, "n_test": 20}

RULES = (
    "\nEnd every answer with the word DONE.\nWrap the final answer in <answer></answer> tags."
    "\nDo not use any commas in your answer.\nNever write an exclamation mark."
    "\nNumbers must be written as digits.\nInclude a postscript starting with P.S.\n"
)
"""Rules the simulated rulebook task keeps asking for: an edit that beats the seed."""


async def running_demo(minutes: float = 8) -> tuple[Pipeline, asyncio.Task[object]]:
    pipe = build_demo(DemoConfig(minutes=minutes, time_scale=1.0, **SMALL)).pipeline
    task: asyncio.Task[object] = asyncio.create_task(pipe.run())
    await sim_until(lambda: len(pipe.pool))
    return pipe, task


async def sim_until(pred: Callable[[], object]) -> None:
    """Let simulated time pass until ``pred()`` holds (on the virtual clock this is free)."""
    while not pred():  # noqa: ASYNC110 - the condition is the pipeline's state, no event has it
        await asyncio.sleep(1)


async def until_step_ends(pipe: Pipeline, task: asyncio.Task[object], step: int) -> RunResult:
    """Let the run go until ``step`` has ended, then stop it: the rest is not under test."""
    await sim_until(
        lambda: any(isinstance(e, StepFinished) and e.step == step for e in pipe.recorder.events)
    )
    pipe.stop("cancel")
    result = await task
    assert isinstance(result, RunResult)
    return result


def human(pipe: Pipeline, parent: Artifact, text: str) -> Artifact:
    return parent.derive(
        pipe.new_id("a"),
        {"system_prompt": text},
        origin=Origin.HUMAN,
        base_version=pipe.pool.version,
        created_at=pipe.clock.now(),
    )


async def test_a_submitted_artifact_goes_through_gate_and_validation_to_admission() -> None:
    pipe, task = await running_demo()
    seed = pipe.pool.best().artifact
    mine = human(pipe, seed, seed["system_prompt"] + RULES)
    step = pipe.submit(mine)
    result = await until_step_ends(pipe, task, step)
    ev = [e for e in result.events if getattr(e, "step", None) == step]
    sub = [e for e in ev if isinstance(e, HumanSubmitted)]
    assert [(e.artifact_id, e.parent_id, e.components) for e in sub] == [
        (mine.id, seed.id, ("system_prompt",))
    ]
    made = [e for e in ev if isinstance(e, ProposalMade)]
    assert [(e.artifact_id, e.parent_id) for e in made] == [(mine.id, seed.id)]
    # The propose stage adopted the person's text: no reflection call in this step.
    assert not [e for e in ev if isinstance(e, LLMCallStarted) and e.role == "reflection"]
    gate = [e for e in ev if isinstance(e, GateResult)]
    assert len(gate) == 1 and gate[0].artifact_id == mine.id and gate[0].passed
    assert [e.artifact_id for e in ev if isinstance(e, ValidationDone)] == [mine.id]
    admitted = [e for e in ev if isinstance(e, Admitted)]
    assert [(e.artifact_id, e.origin, e.parents) for e in admitted] == [
        (mine.id, "human", (seed.id,))
    ]
    entry = next(e for e in result.pool.entries if e.artifact.id == mine.id)
    assert entry.artifact["system_prompt"].endswith(RULES)
    assert entry.score > next(e.score for e in result.pool.entries if e.artifact == seed)


async def test_a_human_proposal_that_is_no_better_is_gated_out_like_any_other() -> None:
    pipe, task = await running_demo()
    seed = pipe.pool.best().artifact
    step = pipe.submit(human(pipe, seed, seed["system_prompt"] + "\nBe nice."))
    result = await until_step_ends(pipe, task, step)
    ends = [e.outcome for e in result.events if isinstance(e, StepFinished) and e.step == step]
    assert len(ends) == 1 and ends[0].startswith("gated out")


async def test_submit_refuses_what_is_not_a_human_child_of_an_admitted_artifact() -> None:
    pipe, task = await running_demo(minutes=2)
    seed = pipe.pool.best().artifact
    proposal = seed.derive(
        pipe.new_id("a"), {"system_prompt": "x"}, origin=Origin.PROPOSAL, base_version=1,
        created_at=0.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="origin 'human'"):
        pipe.submit(proposal)
    orphan = Artifact(id=pipe.new_id("a"), components={"system_prompt": "x"}, origin=Origin.HUMAN)
    with pytest.raises(ValueError, match="needs an admitted parent"):
        pipe.submit(orphan)
    with pytest.raises(ValueError, match="is taken"):
        pipe.submit(Artifact(id=seed.id, components=dict(seed), origin=Origin.HUMAN,
                             parents=(seed.id,)))  # fmt: skip
    odd = Artifact(
        id=pipe.new_id("a"), components={"other": "x"}, origin=Origin.HUMAN, parents=(seed.id,)
    )
    with pytest.raises(ValueError, match="components of its parent"):
        pipe.submit(odd)
    pipe.stop("cancel")
    await task


async def test_replacing_a_queued_item_before_its_proposal_makes_it_the_proposal() -> None:
    pipe, task = await running_demo()
    pipe.pause("propose")
    await sim_until(lambda: pipe.queued("propose"))
    item = pipe.queued("propose")[0]
    parent = item.artifact
    mine = human(pipe, parent, parent["system_prompt"] + RULES)
    assert pipe.replace_item(item.id, mine)
    pipe.resume("propose")
    result = await until_step_ends(pipe, task, item.step)
    ev = [e for e in result.events if getattr(e, "step", None) == item.step]
    edited = [e for e in ev if isinstance(e, QueueEdited)]
    assert [(e.action, e.artifact_id, e.replaced_id) for e in edited] == [
        ("replace", mine.id, parent.id)
    ]
    made = [e for e in ev if isinstance(e, ProposalMade)]
    assert [(e.artifact_id, e.parent_id) for e in made] == [(mine.id, parent.id)]
    assert not [e for e in ev if isinstance(e, LLMCallStarted) and e.role == "reflection"]
    assert [e.artifact_id for e in ev if isinstance(e, GateResult)] == [mine.id]


async def test_replacing_a_queued_proposal_sends_the_edit_to_the_gate() -> None:
    pipe, task = await running_demo()
    pipe.pause("gate")
    await sim_until(lambda: pipe.queued("gate"))
    item = pipe.queued("gate")[0]
    proposal = item.artifact
    mine = human(pipe, proposal, proposal["system_prompt"] + RULES)
    assert pipe.replace_item(item.id, mine)
    pipe.resume("gate")
    result = await until_step_ends(pipe, task, item.step)
    gate = [e for e in result.events if isinstance(e, GateResult) and e.step == item.step]
    assert [e.artifact_id for e in gate] == [mine.id]
    assert mine.parents == (proposal.id,)


async def test_dropping_a_queued_item_ends_its_step_and_it_never_runs() -> None:
    pipe, task = await running_demo(minutes=4)
    pipe.pause("gate")
    await sim_until(lambda: len(pipe.queued("gate")) >= 2)
    victim = pipe.queued("gate")[1]
    assert pipe.drop_item(victim.id)
    assert not pipe.drop_item(victim.id)
    assert victim.id not in {i.id for i in pipe.queued("gate")}
    pipe.resume("gate")
    result = await until_step_ends(pipe, task, victim.step)
    assert not [
        e for e in result.events if isinstance(e, ItemStarted) and e.item_id == victim.id
        and e.stage == "gate"
    ]  # fmt: skip
    ends = [
        e.outcome for e in result.events if isinstance(e, StepFinished) and e.step == victim.step
    ]
    assert ends == ["dropped from the gate queue by a person"]
    assert next(s for s in result.events if isinstance(s, QueueEdited)).action == "drop"
