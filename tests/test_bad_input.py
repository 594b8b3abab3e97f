"""Bad input, told apart at once: non-finite scores, budgets smaller than one validation
sweep, stages without workers, malformed arguments, and the same text validated twice."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from toy import ToyWorkload

from flashevolve_nb import optimize
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import Budget, Pipeline, PipelineConfig, RunFailed
from flashevolve_nb.engine.events import ItemFailed, StepFinished
from flashevolve_nb.llm.openai_backend import OpenAIBackend


@dataclass
class Batch:
    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None = None


class Exclaim:
    """Scores a text by its '!'s (``n / x`` on example ``x``); proposals add one more."""

    def __init__(self, nan: Any = None, proposal: str | None = None) -> None:
        self.nan = nan or (lambda text, x: False)
        self.proposal = proposal
        self.seen = 0
        self._lock = threading.Lock()

    def evaluate(self, batch: list[int], candidate: dict[str, str], capture_traces: bool = False
                 ) -> Batch:  # fmt: skip
        with self._lock:
            self.seen += len(batch)
        text = candidate["word"]
        n = text.count("!")
        scores = [math.nan if self.nan(text, x) else min(1.0, n / x) for x in batch]
        return Batch(list(batch), scores, [None] * len(batch) if capture_traces else None)

    def make_reflective_dataset(self, candidate: Any, eval_batch: Any, components: Any) -> Any:
        return {c: [{"Feedback": "more!"}] for c in components}

    def propose_new_texts(self, candidate: Any, reflective_dataset: Any, components: Any) -> Any:
        return {c: self.proposal or candidate[c] + "!" for c in components}


def run(adapter: Exclaim, **kw: Any) -> Any:
    args: dict[str, Any] = dict(
        seed_candidate={"word": "hi"}, trainset=[1, 2, 3, 4], valset=[2, 3, 4], adapter=adapter,
        max_metric_calls=150, seed=1,
    )  # fmt: skip
    args.update(kw)
    return optimize(**args)


# ---- 1. non-finite scores ------------------------------------------------------------
def test_a_nan_score_fails_its_evaluation_and_names_the_example() -> None:
    # Texts with two or more '!' score NaN on example 3: those evaluations fail.
    result = run(Exclaim(nan=lambda text, x: text.count("!") >= 2 and x == 3))
    assert all(math.isfinite(s) for s in result.val_aggregate_scores)
    assert math.isfinite(result.best_score)
    failures = [e for e in result.run.events if isinstance(e, ItemFailed)]
    assert failures, "NaN scores must fail the evaluation that got them"
    assert all("non-finite" in e.error and "example" in e.error for e in failures)
    assert any("example 1 of" in e.error for e in failures)  # example 3 of [2, 3, 4]


def test_a_run_whose_every_score_is_nan_says_so() -> None:
    with pytest.raises(RunFailed, match=r"seed evaluation failed.*non-finite score nan"):
        run(Exclaim(nan=lambda text, x: True))


# ---- 2. max_metric_calls smaller than one validation sweep -----------------------------
def test_a_budget_smaller_than_one_validation_sweep_is_refused_before_any_call() -> None:
    adapter = Exclaim()
    with pytest.raises(ValueError, match=r"max_metric_calls=120.*1000 examples"):
        run(adapter, valset=list(range(1, 1001)), max_metric_calls=120)
    assert adapter.seen == 0
    with pytest.raises(ValueError, match=r"max_metric_calls=200.*500"):
        build_demo(DemoConfig(n_val=500, max_metric_calls=200))


def test_a_budget_of_one_sweep_and_more_is_never_overshot() -> None:
    adapter = Exclaim()
    result = run(adapter, max_metric_calls=40)
    assert result.total_metric_calls <= 40 and adapter.seen <= 40


# ---- 3. zero workers -------------------------------------------------------------------
def test_a_stage_without_workers_is_refused_up_front() -> None:
    adapter = Exclaim()
    with pytest.raises(ValueError, match=r"stage 'validate'.*0 workers"):
        run(adapter, workers={"validate": 0})
    assert adapter.seen == 0
    with pytest.raises(ValueError, match=r"stage 'b'.*0 workers"):
        Pipeline(ToyWorkload(), PipelineConfig(workers={"b": 0}, budget=Budget(max_sim_seconds=9)))
    with pytest.raises(ValueError, match=r"stage 'a'.*0 workers"):
        Pipeline(ToyWorkload(workers=0), PipelineConfig(budget=Budget(max_sim_seconds=9)))


# ---- 4. clear errors for malformed arguments --------------------------------------------
@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"seed_candidate": "text"}, TypeError, r"seed_candidate.*component names.*got str"),
        ({"max_metric_calls": "100"}, TypeError, r"max_metric_calls must be an int.*'100'"),
        ({"max_metric_calls": 2.5}, TypeError, r"max_metric_calls must be an int"),
        ({"reflection_minibatch_size": 0}, ValueError, r"reflection_minibatch_size.*>= 1.*0"),
    ],
)
def test_bad_optimize_arguments_are_named(kw: dict[str, Any], error: type, match: str) -> None:
    adapter = Exclaim()
    with pytest.raises(error, match=match):
        run(adapter, **kw)
    assert adapter.seen == 0


def test_a_key_that_is_not_text_is_refused_when_given() -> None:
    with pytest.raises(TypeError, match=r"api_key must be a str.*got int"):
        OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", api_key=123)


def test_minutes_that_are_not_a_finite_number_name_minutes() -> None:
    from flashevolve_nb import start

    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match=r"minutes") as err:
            start(minutes=bad)
        assert "Budget" not in str(err.value)


# ---- 7. the same text is validated once ---------------------------------------------------
def test_identical_proposals_are_validated_and_admitted_once() -> None:
    adapter = Exclaim(proposal="hi!!")
    result = run(adapter, max_metric_calls=300)
    texts = [c["word"] for c in result.candidates]
    assert sorted(texts) == ["hi", "hi!!"], texts
    stats = result.run.stats
    assert stats.duplicates > 0
    outcomes = [e.outcome for e in result.run.events if isinstance(e, StepFinished)]
    assert sum(o.startswith("duplicate") for o in outcomes) == stats.duplicates
