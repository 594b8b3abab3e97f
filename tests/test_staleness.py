"""Staleness policies and reflective repair, on scripted inputs and a virtual clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb.engine import Pipeline, PipelineConfig
from flashevolve_nb.engine.artifact import Origin
from flashevolve_nb.engine.events import (
    Admitted,
    PolicyDecision,
    StageControl,
    StaleDetected,
    ValidationDone,
)
from flashevolve_nb.engine.staleness import GuardedPolicy, make_policy, policy_names
from flashevolve_nb.llm.protocol import Completion, LLMError, Message, Usage
from flashevolve_nb.repair import MetaPolicy, ReflectivePolicy
from flashevolve_nb.repair.prompt import REPAIR_MARKER

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


class ScriptedLLM:
    """Answers repair prompts with ``script(prompt)``; records every prompt it saw."""

    name = "scripted"
    simulated = True

    def __init__(self, script: Callable[[str], str], finish_reason: str = "stop") -> None:
        self.script = script
        self.finish_reason = finish_reason
        self.prompts: list[str] = []

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        prompt = messages[-1]["content"]
        assert REPAIR_MARKER in prompt
        self.prompts.append(prompt)
        text = self.script(prompt)
        return Completion(text, Usage(len(prompt) // 4, 20), 0.0, self.finish_reason)  # type: ignore[arg-type]


def best_text(prompt: str) -> str:
    """The current best's text, read back out of the repair prompt."""
    m = re.search(r"## Current best.*?```\n(.*?)\n```", prompt, re.S)
    assert m is not None
    return m.group(1)


def patch_answer(prompt: str) -> str:
    new = best_text(prompt) + " + folded"
    return f'DECISION: patch\nREASON: keep the good part\n\n### Component "text"\n```\n{new}\n```'


async def run_toy(policy: Any, *, steps: int = 12, depth: int = 4, **kw: Any) -> Pipeline:
    pipe = Pipeline(ToyWorkload(max_steps=steps, workers=4), PipelineConfig(depth=depth, **kw))
    pipe.set_policy(policy)
    await pipe.run()
    return pipe


def events_of(pipe: Pipeline, kind: type) -> list[Any]:
    return [e for e in pipe.recorder.events if isinstance(e, kind)]


# ---- the policies by name ----------------------------------------------------------


async def test_every_policy_is_selectable_by_name() -> None:
    assert set(policy_names()) == {"accept", "guarded", "discard", "reflective", "meta", "rebase"}
    for name in policy_names():
        assert make_policy(name).name == name
    assert make_policy("guarded:5") == GuardedPolicy(delta_max=5)
    assert make_policy("meta:3").group_size == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown staleness policy 'fresh'"):
        make_policy("fresh")
    with pytest.raises(ValueError, match="must be an integer"):
        make_policy("guarded:x")
    with pytest.raises(ValueError, match="takes no ':' argument"):
        make_policy("discard:2")
    with pytest.raises(ValueError, match=r"PipelineConfig\.policy"):
        PipelineConfig(policy="nope")


async def test_accept_uses_stale_items_as_they_are() -> None:
    pipe = await run_toy("accept")
    decisions = events_of(pipe, PolicyDecision)
    assert decisions and {d.decision for d in decisions} == {"accept"}
    assert len(events_of(pipe, StaleDetected)) == len(decisions)


async def test_guarded_accepts_up_to_delta_max_and_discards_beyond() -> None:
    pipe = await run_toy(GuardedPolicy(delta_max=1), steps=20, depth=6)
    decisions = events_of(pipe, PolicyDecision)
    assert {d.decision for d in decisions} == {"accept", "discard"}
    for d in decisions:
        assert d.decision == ("accept" if d.staleness <= 1 else "discard")
    discarded = {d.artifact_id for d in decisions if d.decision == "discard"}
    assert not discarded & {e.artifact_id for e in events_of(pipe, Admitted)}


async def test_discard_drops_everything_stale() -> None:
    pipe = await run_toy("discard")
    decisions = events_of(pipe, PolicyDecision)
    assert decisions and {d.decision for d in decisions} == {"discard"}
    admitted = {e.artifact_id for e in events_of(pipe, Admitted)}
    assert not admitted & {d.artifact_id for d in decisions}


# ---- reflective repair ---------------------------------------------------------------


async def test_the_repair_llm_sees_exactly_the_admissions_since_the_base_version() -> None:
    llm = ScriptedLLM(lambda p: "DECISION: accept\nREASON: still fine")
    pipe = await run_toy(ReflectivePolicy(llm=llm), steps=14, depth=5)
    decisions = events_of(pipe, PolicyDecision)
    assert decisions and len(llm.prompts) == len(decisions)
    # Replay admissions in order to know the pool at each decision.
    admitted: list[Admitted] = []
    for e in pipe.recorder.events:
        if isinstance(e, Admitted):
            admitted.append(e)
        elif isinstance(e, StaleDetected):
            expected = tuple(a.artifact_id for a in admitted if a.version > e.base_version)
            d = next(
                x for x in decisions if x.item_id == e.item_id and x.point == e.point and x.t >= e.t
            )
            assert d.history_ids == expected
            assert len(expected) == e.staleness
            shown = re.findall(r"^### (a\d+) \(version", d.request, re.M)
            assert tuple(shown) == expected
            assert d.request in llm.prompts
            assert d.answer == "DECISION: accept\nREASON: still fine"
            assert d.artifact is not None and d.artifact.id == e.artifact_id


async def test_a_patch_is_a_new_validated_artifact_with_both_parents() -> None:
    llm = ScriptedLLM(patch_answer)
    pipe = await run_toy(ReflectivePolicy(llm=llm), steps=12, depth=4)
    patches = [d for d in events_of(pipe, PolicyDecision) if d.decision == "patch"]
    assert patches
    admitted = {e.artifact_id: e for e in events_of(pipe, Admitted)}
    repaired_admitted = 0
    for d in patches:
        new = d.replacement
        assert new is not None and new.origin is Origin.REPAIR
        assert new.id != d.artifact_id
        assert new.parents[1] == d.artifact_id  # the stale artifact
        # the first parent is the best at the time of the decision, and the new text
        # is what the model wrote on top of it
        best_at_decision = best_text(d.request)
        assert new["text"] == best_at_decision + " + folded"
        assert new.base_version == d.staleness + d.artifact.base_version  # type: ignore[union-attr]
        if new.id in admitted:
            repaired_admitted += 1
            assert admitted[new.id].origin == "repair"
            assert admitted[new.id].parents == new.parents
    assert repaired_admitted >= 1
    stats = pipe.result().stats
    assert stats.repaired_admitted == repaired_admitted
    assert stats.decisions["patch"] == len(patches)
    assert stats.repair_tokens > 0


async def test_a_patch_at_admission_goes_back_through_validation() -> None:
    from flashevolve_nb.demo import DemoConfig, build_demo

    demo = build_demo(
        DemoConfig(policy="reflective", minutes=12, staleness_lab=True, n_val=20, n_train=30)
    )
    result = await demo.run()
    validated = [e.artifact_id for e in result.events if isinstance(e, ValidationDone)]
    repaired = [e for e in result.events if isinstance(e, Admitted) and e.origin == "repair"]
    assert repaired, "the staleness lab should produce repaired admissions"
    for a in repaired:
        assert a.artifact_id in validated
        i_val = next(
            i
            for i, e in enumerate(result.events)
            if isinstance(e, ValidationDone) and e.artifact_id == a.artifact_id
        )
        assert i_val < result.events.index(a)


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [
        ("I think it is fine overall.", "stop", "malformed: no DECISION"),
        ("DECISION: patch\nREASON: merge", "stop", "malformed: a patch without a readable"),
        ("DECISION: maybe\nREASON: unsure", "stop", "malformed: no DECISION"),
        ("DECISION: patch\nREASON: x\n```\nhalf a te", "length", "truncated"),
    ],
)
async def test_malformed_repair_answers_fall_back_to_discard(
    answer: str, finish: str, reason: str
) -> None:
    llm = ScriptedLLM(lambda p: answer, finish_reason=finish)
    pipe = await run_toy(ReflectivePolicy(llm=llm))
    decisions = events_of(pipe, PolicyDecision)
    assert decisions
    for d in decisions:
        assert d.decision == "discard"
        assert d.reason.startswith(reason)
        assert d.answer == answer
    assert pipe.state == "finished"


async def test_a_failing_repair_backend_discards_and_the_run_goes_on() -> None:
    class Down(ScriptedLLM):
        async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
            raise LLMError("repair server unreachable")

    pipe = await run_toy(ReflectivePolicy(llm=Down(lambda p: "")))
    decisions = events_of(pipe, PolicyDecision)
    assert decisions and all(d.decision == "discard" for d in decisions)
    assert all("repair server unreachable" in d.reason for d in decisions)
    assert pipe.state == "finished"


async def test_without_a_repair_model_the_error_says_what_to_do() -> None:
    pipe = await run_toy(ReflectivePolicy())
    failed = [e for e in pipe.recorder.events if e.kind == "item_failed"]
    assert failed
    assert "give the policy one" in failed[0].error


# ---- meta ------------------------------------------------------------------------------


async def test_meta_defers_stale_work_and_distils_it_after_an_improvement() -> None:
    llm = ScriptedLLM(patch_answer)
    policy = MetaPolicy(llm=llm, group_size=2)
    pipe = await run_toy(policy, steps=16, depth=5)
    decisions = events_of(pipe, PolicyDecision)
    deferred = [d for d in decisions if d.decision == "defer"]
    distilled = [d for d in decisions if d.point == "distil"]
    assert deferred and distilled
    for d in distilled:
        shown = re.findall(r"^## Stale proposal (\d+)", d.request, re.M)
        assert 1 <= len(shown) <= 2
        if d.decision == "patch":
            new = d.replacement
            assert new is not None and new.origin is Origin.REPAIR
            assert len(new.parents) == 1 + len(shown)
    # every distillation came after a new best was admitted
    first_best = next(
        e.t for e in pipe.recorder.events if isinstance(e, Admitted) and e.step and e.is_best
    )
    assert all(d.t >= first_best for d in distilled)
    # nothing left half-done: every step that started has finished
    kinds = [e.kind for e in pipe.recorder.events]
    assert kinds.count("step_started") == kinds.count("step_finished")


async def test_meta_buffer_is_bounded() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        MetaPolicy(group_size=4, max_buffer=2)


# ---- switching live ------------------------------------------------------------------


async def test_the_policy_can_be_switched_mid_run() -> None:
    import asyncio

    pipe = Pipeline(ToyWorkload(max_steps=30, workers=4), PipelineConfig(depth=5))
    task = asyncio.create_task(pipe.run())
    await asyncio.sleep(25)
    switched_at = pipe.clock.now()
    pipe.set_policy("guarded", delta_max=0)
    await task
    decisions = events_of(pipe, PolicyDecision)
    before = [d for d in decisions if d.t < switched_at]
    after = [d for d in decisions if d.t >= switched_at]
    assert before and after
    assert {d.policy for d in before} == {"accept"}
    assert {(d.policy, d.decision) for d in after} == {("guarded", "discard")}
    controls = [e for e in events_of(pipe, StageControl) if e.action == "policy"]
    assert [c.value for c in controls] == ["guarded"]
