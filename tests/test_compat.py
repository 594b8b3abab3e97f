"""The gepa compatibility layer's parts, without the gepa package where they do not need it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flashevolve_nb.compat.budget import MetricBudget
from flashevolve_nb.compat.calls import AdapterCalls, AdapterContractError, MergedBatch
from flashevolve_nb.compat.data import IdSpace, ListLoader, as_loader
from flashevolve_nb.compat.lm import CallableLLM, as_llm
from flashevolve_nb.compat.simulated import GepaPromptReader, rulebook_for_gepa, to_simulator_prompt
from flashevolve_nb.compat.state import GepaStateView
from flashevolve_nb.llm.protocol import LLMError
from flashevolve_nb.sim import Simulator
from flashevolve_nb.sim.behaviour import read_reflection_prompt
from flashevolve_nb.workloads.gepa.prompts import REFLECTION_MARKER

ROOT = Path(__file__).resolve().parents[1]


# ---- the metric-call budget ----------------------------------------------------
@pytest.mark.asyncio
async def test_budget_waits_for_reservations_and_never_exceeds_the_cap() -> None:
    b = MetricBudget(50)
    assert await b.reserve(1, 30)
    waiter = asyncio.ensure_future(b.reserve(2, 30))
    await asyncio.sleep(0)
    assert not waiter.done(), "30 + 30 > 50: the second step must wait"
    b.spend(1, 6)  # step 1 ran its minibatch and was gated out...
    await asyncio.sleep(0)
    assert not waiter.done()
    b.release(1)  # ...and gave back the 24 it did not spend
    assert await waiter
    assert (b.spent, b.reserved, b.remaining) == (6, 30, 14)
    assert not await b.reserve(3, 45), "50 - 6 < 45: can never be paid"
    assert b.can_ever_pay(44)


@pytest.mark.asyncio
async def test_budget_without_limit_never_waits() -> None:
    b = MetricBudget(None)
    assert await b.reserve(1, 10**9)
    b.spend(1, 5)
    assert b.remaining is None and b.can_ever_pay(10**12)


def test_budget_rejects_a_nonpositive_cap() -> None:
    with pytest.raises(ValueError, match="max_metric_calls"):
        MetricBudget(0)


# ---- loaders -------------------------------------------------------------------
def test_lists_become_loaders_and_ids_get_string_keys() -> None:
    space = IdSpace.of(as_loader(["a", "b", "c"], "trainset"), "trainset")
    assert space.keys == ("0", "1", "2")
    assert space.fetch(["2", "0"]) == ["c", "a"]
    assert space.data_ids(["1"]) == [1]


def test_a_custom_loader_keeps_its_ids() -> None:
    class Loader:
        def all_ids(self) -> list[str]:
            return ["q7", "q9"]

        def fetch(self, ids: list[str]) -> list[str]:
            return [f"example {i}" for i in ids]

        def __len__(self) -> int:
            return 2

    space = IdSpace.of(as_loader(Loader(), "valset"), "valset")
    assert space.keys == ("q7", "q9") and space.fetch(["q9"]) == ["example q9"]


def test_loaders_refuse_what_they_cannot_address() -> None:
    with pytest.raises(TypeError, match="trainset must be a list"):
        as_loader(42, "trainset")
    with pytest.raises(ValueError, match="valset is empty"):
        IdSpace.of(ListLoader([]), "valset")

    class Clashing:
        def all_ids(self) -> list[Any]:
            return [1, "1"]

        def fetch(self, ids: list[Any]) -> list[Any]:
            return list(ids)

        def __len__(self) -> int:
            return 2

    with pytest.raises(ValueError, match="read the same as text"):
        IdSpace.of(Clashing(), "valset")


# ---- adapter calls --------------------------------------------------------------
@dataclass
class Batch:
    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None = None
    objective_scores: list[dict[str, float]] | None = None
    num_metric_calls: int | None = None


class Ctx:
    """The two things AdapterCalls needs from a stage context."""

    def __init__(self) -> None:
        self.roles: list[str] = []

    def now(self) -> float:
        return 0.0

    async def chat(self, llm: Any, messages: Any, *, role: str, **params: Any) -> Any:
        self.roles.append(role)
        return await llm.chat(messages)


class Doubler:
    def __init__(self, bad: str = "") -> None:
        self.seen: list[list[int]] = []
        self.bad = bad

    def evaluate(self, batch: list[int], candidate: dict[str, str], capture_traces: bool) -> Any:
        self.seen.append(list(batch))
        scores = [x / 10 for x in batch]
        if self.bad == "short":
            scores = scores[:-1]
        if self.bad == "text":
            return {"scores": scores}
        return Batch(
            outputs=[2 * x for x in batch],
            scores=scores,
            trajectories=[f"t{x}" for x in batch] if capture_traces else None,
        )


@pytest.mark.asyncio
async def test_an_evaluation_is_split_into_calls_and_put_back_together_in_order() -> None:
    adapter = Doubler()
    calls = AdapterCalls(adapter, concurrency=4, split=3)
    ctx = Ctx()
    try:
        ev = await calls.evaluate(ctx, {"p": "x"}, list(range(7)), capture_traces=True)
    finally:
        calls.close()
    assert sorted(map(len, adapter.seen)) == [1, 3, 3]
    assert ev.scores == tuple(x / 10 for x in range(7))
    assert ev.outputs == tuple(2 * x for x in range(7))
    assert ev.trajectories == tuple(f"t{x}" for x in range(7))
    assert ev.metric_calls == 7
    # The adapter's own batch type comes back for make_reflective_dataset.
    assert isinstance(ev.batch, Batch) and ev.batch.scores == list(ev.scores)
    assert ctx.roles == ["task"] * 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("bad", "message"), [("short", "returned 1 scores for 2"), ("text", "not an EvaluationBatch")]
)
async def test_a_broken_evaluation_batch_is_named(bad: str, message: str) -> None:
    calls = AdapterCalls(Doubler(bad), split=1)
    try:
        with pytest.raises(AdapterContractError, match=message):
            await calls.evaluate(Ctx(), {"p": "x"}, [1, 2], capture_traces=False)
    finally:
        calls.close()


@pytest.mark.asyncio
async def test_batch_evaluate_gets_the_parts_in_one_call() -> None:
    class Batched(Doubler):
        def __init__(self) -> None:
            super().__init__()
            self.batch_calls = 0

        def batch_evaluate(self, items: list[tuple[dict[str, str], list[int]]]) -> list[Any]:
            self.batch_calls += 1
            return [MergedBatch([0] * len(b), [1.0] * len(b), ["t"] * len(b)) for _, b in items]

    adapter = Batched()
    calls = AdapterCalls(adapter, split=2)
    try:
        ev = await calls.evaluate(Ctx(), {"p": "x"}, [1, 2, 3], capture_traces=False)
        plain = await calls.evaluate(Ctx(), {"p": "x"}, [1], capture_traces=False, batched=False)
    finally:
        calls.close()
    assert adapter.batch_calls == 1 and ev.scores == (1.0, 1.0, 1.0)
    assert ev.trajectories is not None  # batch_evaluate always brings traces
    assert plain.scores == (0.1,) and adapter.seen == [[1]]


def test_something_without_evaluate_is_not_an_adapter() -> None:
    with pytest.raises(TypeError, match="not a gepa adapter"):
        AdapterCalls(object())


# ---- the reflection model --------------------------------------------------------
@pytest.mark.asyncio
async def test_a_callable_becomes_an_llm_and_its_failures_llm_errors() -> None:
    seen: list[Any] = []

    def lm(prompt: Any) -> str:
        seen.append(prompt)
        if prompt == "boom":
            raise RuntimeError("quota")
        return "```\nnew\n```"

    llm = as_llm(lm)
    assert isinstance(llm, CallableLLM)
    try:
        done = await llm.chat([{"role": "user", "content": "hello"}])
        assert done.text == "```\nnew\n```" and seen == ["hello"]
        await llm.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        assert seen[-1] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
        with pytest.raises(LLMError, match="quota"):
            await llm.chat([{"role": "user", "content": "boom"}])
    finally:
        llm.close()


def test_backends_and_model_strings() -> None:
    sim_llm = Simulator(seed=1).llm("reflection")
    wrapped = as_llm(sim_llm)
    assert isinstance(wrapped, GepaPromptReader) and wrapped.llm is sim_llm
    assert as_llm(wrapped) is wrapped
    assert isinstance(as_llm("sim:api"), GepaPromptReader)
    served = as_llm("openai/some-model@http://127.0.0.1:9/v1")  # built, not called
    assert "some-model" in served.name and not served.simulated
    with pytest.raises(ValueError, match="no model name"):
        as_llm("openai/")
    with pytest.raises(TypeError, match="reflection model is a callable"):
        as_llm(3.5)


GEPA_PROMPT = """I provided an assistant with the following instructions to perform a task for me:
```
Be brief.
```

{examples_intro}
```
# Example 1
## Inputs
Explain volcanoes to a curious teenager.

## Generated Outputs
Volcanoes are mountains.
## Not a key
still the output

## Feedback
Violated rules:
The answer must end with the word DONE.

# Example 2
## Inputs
Give me practical advice about kite flying.

## Generated Outputs
Fly it.

## Feedback
All rules satisfied.
```

Your task is to write a new instruction for the assistant.

Provide the new instructions within ``` blocks.""".format(
    examples_intro=(
        "The following are examples of different task inputs provided to the assistant along "
        "with the assistant's response for each of them, and some feedback on how the "
        "assistant's response could be better:"
    )
)


def test_gepas_reflection_prompt_is_restated_for_the_simulator() -> None:
    restated = to_simulator_prompt(GEPA_PROMPT)
    assert REFLECTION_MARKER in restated
    read = read_reflection_prompt(restated)
    assert read.current_text == "Be brief."
    assert len(read.inputs) == 2 and "volcanoes" in read.inputs[0]
    assert "The answer must end with the word DONE." in read.feedback[0]
    assert to_simulator_prompt(restated) == restated
    assert to_simulator_prompt("Something else entirely") == "Something else entirely"


def test_rulebook_data_scores_with_the_hidden_rules() -> None:
    data = rulebook_for_gepa(seed=3, n_train=4, n_val=3, n_test=2)
    assert len(data.train) == 4 and {"input", "additional_context", "answer"} <= set(data.val[0])
    judged = data.evaluator(data.train[0], "nothing in particular")
    assert 0.0 <= judged.score < 1.0 and judged.feedback.startswith("Violated rules:")


# ---- the gepa-shaped state ----------------------------------------------------------
def test_the_state_view_numbers_candidates_and_tracks_fronts() -> None:
    state = GepaStateView({"p": "seed"}, ["v1", "v2"])
    assert state.add("a0", {"p": "seed"}, (), [0.5, 0.0], 0) == (0, [0], [])
    idx, front, displaced = state.add("a1", {"p": "x"}, ("a0",), [1.0, 0.0], 10)
    assert (idx, front, displaced) == (1, [0, 1], [])
    idx, front, displaced = state.add("a2", {"p": "y"}, ("a1", "gone"), [1.0, 1.0], 20)
    assert (idx, front, displaced) == (2, [1, 2], [0])
    assert state.parent_program_for_candidate == [[None], [0], [1]]
    assert state.program_full_scores_val_set == [0.25, 0.5, 1.0]
    assert state.get_pareto_front_mapping() == {"v1": {1, 2}, "v2": {2}}
    assert state.is_consistent() and state.index_of("a2") == 2 and state.artifact_id(1) == "a1"


# ---- optional dependency ---------------------------------------------------------------
def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_package_does_not_import_gepa() -> None:
    r = run_python(
        """
        import sys, flashevolve_nb, flashevolve_nb.compat
        assert callable(flashevolve_nb.optimize) and callable(flashevolve_nb.optimize_async)
        print(sorted(m for m in sys.modules if m == "gepa" or m.startswith("gepa.")))
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_an_adapter_that_proposes_runs_without_gepa_installed() -> None:
    r = run_python(
        """
        import json, sys
        sys.modules["gepa"] = None  # as if gepa were not installed
        from dataclasses import dataclass
        import flashevolve_nb

        @dataclass
        class Batch:
            outputs: list
            scores: list
            trajectories: list | None = None

        class Adapter:
            def evaluate(self, batch, candidate, capture_traces=False):
                n = candidate["word"].count("!")
                scores = [min(1.0, n / x) for x in batch]
                return Batch(scores, scores, [None] * len(batch) if capture_traces else None)

            def make_reflective_dataset(self, candidate, eval_batch, components):
                return {c: [{"Feedback": "more!"}] for c in components}

            def propose_new_texts(self, candidate, reflective_dataset, components):
                return {c: candidate[c] + "!" for c in components}

        result = flashevolve_nb.optimize(
            seed_candidate={"word": "hi"}, trainset=[1, 2, 3, 4], valset=[2, 4],
            adapter=Adapter(), max_metric_calls=60, seed=1,
        )
        try:
            result.to_gepa()
        except ImportError as exc:
            assert "gepa" in str(exc)
        else:
            raise AssertionError("to_gepa() without gepa must say what to install")
        print(json.dumps([result.total_metric_calls, result.best_score, len(result.candidates)]))
        """
    )
    assert r.returncode == 0, r.stderr
    calls, best, n = json.loads(r.stdout)
    assert calls <= 60 and n > 1 and best > 0.0  # the seed scores 0


# ---- a run that cannot start ----------------------------------------------------------
def test_a_seed_evaluation_that_raises_ends_the_run_and_says_why() -> None:
    from flashevolve_nb import optimize
    from flashevolve_nb.engine import RunFailed

    class Down:
        def evaluate(
            self, batch: list[int], candidate: dict[str, str], capture_traces: bool
        ) -> Any:
            raise ConnectionError("the system under test is down")

        def make_reflective_dataset(self, *args: Any) -> Any:
            raise AssertionError("never reached")

        def propose_new_texts(self, *args: Any) -> Any:
            raise AssertionError("never reached")

    with pytest.raises(RunFailed, match="the system under test is down"):
        optimize(seed_candidate={"p": "x"}, trainset=[1, 2], adapter=Down(), max_metric_calls=10)


@pytest.mark.asyncio
async def test_a_cancelled_error_inside_the_adapter_is_an_error_not_our_cancellation() -> None:
    import concurrent.futures

    from flashevolve_nb.compat.calls import CancelledInThread

    class Cancelling(Doubler):
        def evaluate(
            self, batch: list[int], candidate: dict[str, str], capture_traces: bool
        ) -> Any:
            raise concurrent.futures.CancelledError()

    calls = AdapterCalls(Cancelling(), split=1)
    try:
        # asyncio would turn this into the awaiting task's own cancellation, and a
        # pipeline worker would then drop its step without a trace
        with pytest.raises(CancelledInThread, match=r"adapter\.evaluate"):
            await calls.evaluate(Ctx(), {"p": "x"}, [1], capture_traces=False)
    finally:
        calls.close()

    def lm(prompt: Any) -> str:
        raise concurrent.futures.CancelledError()

    llm = CallableLLM(lm)
    try:
        with pytest.raises(LLMError, match="CancelledError"):
            await llm.chat([{"role": "user", "content": "hi"}])
    finally:
        llm.close()
