"""flashevolve_nb.optimize with the real gepa package: its DefaultAdapter, an adapter
written the way gepa's docs describe, its callbacks, stoppers, selectors and result type.

The task model is the simulator behind a plain blocking callable (SimulatedModels),
so adapter calls really run in threads against a server with latency. Timing is
never asserted; what is asserted holds under any thread schedule.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, TypedDict

import pytest

gepa = pytest.importorskip("gepa")

from gepa.adapters.default_adapter.default_adapter import DefaultAdapter  # noqa: E402
from gepa.core.adapter import EvaluationBatch, GEPAAdapter  # noqa: E402
from gepa.core.callbacks import CompositeCallback  # noqa: E402
from gepa.core.data_loader import ListDataLoader  # noqa: E402
from gepa.core.result import GEPAResult  # noqa: E402
from gepa.strategies.candidate_selector import CurrentBestCandidateSelector  # noqa: E402
from gepa.utils import MaxMetricCallsStopper  # noqa: E402

import flashevolve_nb  # noqa: E402
from flashevolve_nb.compat import CALLBACK_METHODS, OptimizeResult, SimulatedModels  # noqa: E402
from flashevolve_nb.compat.simulated import RulebookData, rulebook_for_gepa  # noqa: E402
from flashevolve_nb.engine.events import (  # noqa: E402
    ItemFailed,
    PolicyDecision,
    ProposalFailed,
    ProposalMade,
    StepFinished,
    StepStarted,
)
from flashevolve_nb.sim import Instance, RulebookTask  # noqa: E402

TIME_SCALE = 3000.0


@pytest.fixture
def data() -> RulebookData:
    return rulebook_for_gepa(seed=0, n_train=24, n_val=12, n_test=4)


@pytest.fixture
def models() -> Iterator[SimulatedModels]:
    with SimulatedModels(profile="vllm", seed=0, time_scale=TIME_SCALE) as m:
        yield m


def check_result(result: OptimizeResult, n_val: int, budget: int) -> None:
    """What makes a result valid, whatever the schedule was."""
    n = result.num_candidates
    assert n >= 1
    assert len(result.parents) == len(result.val_aggregate_scores) == n
    assert len(result.val_subscores) == len(result.discovery_eval_counts) == n
    assert result.parents[0] == (None,)
    for i, parents in enumerate(result.parents[1:], start=1):
        assert parents and all(p is not None and 0 <= p < i for p in parents)
    for subs, mean in zip(result.val_subscores, result.val_aggregate_scores, strict=True):
        assert len(subs) == n_val
        assert mean == pytest.approx(sum(subs.values()) / n_val)
    for val_id, front in result.per_val_instance_best_candidates.items():
        best = max(s[val_id] for s in result.val_subscores)
        assert front == {i for i, s in enumerate(result.val_subscores) if s[val_id] == best}
    assert 0 < result.total_metric_calls <= budget
    assert result.discovery_eval_counts[0] == 0
    assert all(0 <= d <= result.total_metric_calls for d in result.discovery_eval_counts)


def steps_by_outcome(result: OptimizeResult) -> Counter[str]:
    assert result.run is not None
    return Counter(
        e.outcome.split(":")[0] for e in result.run.events if isinstance(e, StepFinished)
    )


# ---- gepa's DefaultAdapter over the simulator ---------------------------------------
def test_default_adapter_run_keeps_the_budget_and_converts_to_gepas_result(
    data: RulebookData, models: SimulatedModels
) -> None:
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=150,
        seed=0,
    )
    check_result(result, n_val=12, budget=150)
    # One metric call per example evaluated, as gepa counts: DefaultAdapter asks the
    # task model once per example, so the model saw exactly that many requests.
    assert models.calls["task"] == result.total_metric_calls
    assert result.run is not None and result.run.stats.proposals > 0
    assert result.finish_reason.startswith("max_metric_calls=150 reached")

    g = result.to_gepa()
    assert isinstance(g, GEPAResult)
    assert g.candidates == list(result.candidates)
    assert g.best_idx == result.best_idx and g.best_candidate == result.best_candidate
    assert g.total_metric_calls == result.total_metric_calls
    assert g.per_val_instance_best_candidates == {
        k: set(v) for k, v in result.per_val_instance_best_candidates.items()
    }
    back = GEPAResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.candidates == g.candidates and back.best_idx == g.best_idx
    assert back.val_aggregate_scores == g.val_aggregate_scores


def test_task_lm_and_evaluator_build_gepas_default_adapter(
    data: RulebookData, models: SimulatedModels
) -> None:
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=ListDataLoader(data.train),
        valset=ListDataLoader(data.val),
        task_lm=models.task_lm,
        evaluator=data.evaluator,
        reflection_lm=models.reflection_lm,
        max_metric_calls=80,
    )
    check_result(result, n_val=12, budget=80)
    assert set(result.val_subscores[0]) == set(range(12))  # the loader's own ids


def test_gepa_itself_runs_on_the_same_simulated_models(
    data: RulebookData, models: SimulatedModels
) -> None:
    # The reference the example measures against: gepa's own loop, same adapter and models.
    with redirect_stdout(io.StringIO()):
        g = gepa.optimize(
            seed_candidate=data.seed_candidate,
            trainset=data.train,
            valset=data.val,
            adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
            reflection_lm=models.reflection_lm,
            max_metric_calls=60,
            seed=0,
        )
    assert g.total_metric_calls == models.calls["task"]
    assert models.calls["reflection"] > 0 and g.num_candidates >= 1


# ---- an adapter written the way gepa's docs describe ---------------------------------
class RulebookInput(TypedDict):
    id: str
    request: str
    rules: list[str]


class RulebookTrace(TypedDict):
    request: str
    response: str
    feedback: str


class RulebookOutput(TypedDict):
    response: str


class TwoPartPromptAdapter(GEPAAdapter[RulebookInput, RulebookTrace, RulebookOutput]):
    """A system prompt in two components (persona, rules), run through a chat model."""

    def __init__(self, chat: Any, task: RulebookTask, fail_every: int = 0) -> None:
        self.chat = chat
        self.task = task
        self.fail_every = fail_every
        self.examples_evaluated = 0
        self.calls = 0
        self.evolved_calls = 0
        self._lock = threading.Lock()

    def evaluate(
        self,
        batch: list[RulebookInput],
        candidate: dict[str, str],
        capture_traces: bool = False,
    ) -> EvaluationBatch[RulebookTrace, RulebookOutput]:
        # Only evolved candidates crash (the seed has no rules), counted among
        # themselves: how seed and child calls interleave depends on the
        # thread schedule, and must not decide whether any call crashes.
        evolved = candidate["rules"] != ""
        with self._lock:
            self.calls += 1
            calls = self.calls
            self.evolved_calls += evolved
            nth = self.evolved_calls
        if self.fail_every and evolved and nth % self.fail_every == 0:
            raise RuntimeError(f"the system under test crashed on call {calls}")
        system = f"{candidate['persona']}\n\n{candidate['rules']}".strip()
        outputs: list[RulebookOutput] = []
        scores: list[float] = []
        traces: list[RulebookTrace] = []
        for ex in batch:
            response = self.chat(
                [{"role": "system", "content": system}, {"role": "user", "content": ex["request"]}]
            )
            scored = self.task.score(
                Instance(ex["id"], ex["request"], tuple(ex["rules"])), response
            )
            outputs.append({"response": response})
            scores.append(scored.score)
            traces.append(
                {"request": ex["request"], "response": response, "feedback": scored.feedback}
            )
        with self._lock:
            self.examples_evaluated += len(batch)
        return EvaluationBatch(
            outputs=outputs, scores=scores, trajectories=traces if capture_traces else None
        )

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[RulebookTrace, RulebookOutput],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        assert eval_batch.trajectories is not None
        return {
            c: [
                {
                    "Inputs": t["request"],
                    "Generated Outputs": t["response"],
                    "Feedback": t["feedback"],
                }
                for t in eval_batch.trajectories
            ]
            for c in components_to_update
        }


def rulebook_inputs(task: RulebookTask, split: str) -> list[RulebookInput]:
    return [{"id": i.id, "request": i.input, "rules": list(i.rules)} for i in getattr(task, split)]


TWO_PART_SEED = {"persona": "You are a helpful assistant.", "rules": "Answer the request."}


def test_a_custom_adapter_with_two_components_is_evolved_round_robin(
    models: SimulatedModels,
) -> None:
    task = RulebookTask(seed=1, n_train=20, n_val=10, n_test=0)
    adapter = TwoPartPromptAdapter(models.task_lm, task)
    result = flashevolve_nb.optimize(
        seed_candidate=TWO_PART_SEED,
        trainset=rulebook_inputs(task, "train"),
        valset=rulebook_inputs(task, "val"),
        adapter=adapter,
        reflection_lm=models.reflection_lm,
        reflection_minibatch_size=2,
        max_metric_calls=140,
        seed=3,
    )
    check_result(result, n_val=10, budget=140)
    assert adapter.examples_evaluated == result.total_metric_calls
    assert result.run is not None
    touched = {
        e.component for e in result.run.events if isinstance(e, ProposalMade | ProposalFailed)
    }
    assert touched == {"persona", "rules"}
    for cand in result.candidates:
        assert set(cand) == {"persona", "rules"}


# ---- callbacks ------------------------------------------------------------------------
class Recorder:
    """A gepa callback that implements every method and keeps what it got."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name not in CALLBACK_METHODS:
            raise AttributeError(name)

        def record(event: dict[str, Any]) -> None:
            with self._lock:
                self.log.append((name, event))

        return record


class Broken:
    def on_iteration_start(self, event: dict[str, Any]) -> None:
        raise RuntimeError("an observer bug")


CANONICAL = [
    "on_iteration_start",
    "on_candidate_selected",
    "on_minibatch_sampled",
    "on_evaluation_start",
    "on_evaluation_end",
    "on_evaluation_skipped",
    "on_reflective_dataset_built",
    "on_proposal_start",
    "on_proposal_end",
    "on_evaluation_start",
    "on_evaluation_end",
    "on_candidate_rejected",
    "on_pareto_front_updated",
    "on_valset_evaluated",
    "on_candidate_accepted",
    "on_iteration_end",
]


def is_subsequence(names: Sequence[str], of: Sequence[str]) -> bool:
    it = iter(of)
    return all(any(n == x for x in it) for n in names)


def test_callbacks_get_gepas_events_in_a_consistent_order(
    data: RulebookData, models: SimulatedModels
) -> None:
    rec = Recorder()
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=160,
        callbacks=[rec, Broken(), CompositeCallback([Recorder()])],
    )
    names = [n for n, _ in rec.log]
    assert names[0] == "on_optimization_start" and names[-1] == "on_optimization_end"
    assert names.count("on_optimization_start") == names.count("on_optimization_end") == 1
    seed_eval = next(e for n, e in rec.log if n == "on_valset_evaluated")
    assert seed_eval["iteration"] == 0 and seed_eval["candidate_idx"] == 0

    by_iteration: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for n, e in rec.log:
        if "iteration" in e and e["iteration"] > 0:
            by_iteration.setdefault(e["iteration"], []).append((n, e))
    assert result.run is not None
    steps = [e.step for e in result.run.events if isinstance(e, StepStarted)]
    assert sorted(by_iteration) == sorted(steps)
    for it, events in by_iteration.items():
        seq = [n for n, _ in events if n not in ("on_budget_updated", "on_state_saved")]
        assert seq[0] == "on_iteration_start" and seq[-1] == "on_iteration_end", (it, seq)
        assert seq.count("on_iteration_start") == seq.count("on_iteration_end") == 1
        assert is_subsequence(seq, CANONICAL), (it, seq)
        accepted = [e for n, e in events if n == "on_candidate_accepted"]
        assert events[-1][1]["proposal_accepted"] == bool(accepted)
        for e in accepted:
            idx = e["new_candidate_idx"]
            valset = next(v for n, v in events if n == "on_valset_evaluated")
            assert valset["candidate_idx"] == idx
            assert result.candidates[idx] == valset["candidate"]

    budget = [e for n, e in rec.log if n == "on_budget_updated"]
    used = [e["metric_calls_used"] for e in budget]
    assert used == sorted(used) and used[-1] == result.total_metric_calls
    assert sum(e["metric_calls_delta"] for e in budget) == result.total_metric_calls
    end = rec.log[-1][1]
    assert end["total_metric_calls"] == result.total_metric_calls
    assert end["best_candidate_idx"] == result.best_idx
    assert end["final_state"].program_candidates == list(result.candidates)
    # gepa's own CompositeCallback works as a callback here too
    assert len(rec.log) > 0


# ---- failures -----------------------------------------------------------------------------
def test_an_adapter_that_raises_fails_its_steps_not_the_run(models: SimulatedModels) -> None:
    task = RulebookTask(seed=2, n_train=20, n_val=8, n_test=0)
    adapter = TwoPartPromptAdapter(models.task_lm, task, fail_every=3)
    rec = Recorder()
    seed = {"persona": "You are a helpful assistant.", "rules": ""}
    result = flashevolve_nb.optimize(
        seed_candidate=seed,
        trainset=rulebook_inputs(task, "train"),
        valset=rulebook_inputs(task, "val"),
        adapter=adapter,
        reflection_lm=models.reflection_lm,
        max_metric_calls=150,
        callbacks=[rec],
        split_batches=1,
    )
    check_result(result, n_val=8, budget=150)
    assert result.run is not None
    failed = [e for e in result.run.events if isinstance(e, ItemFailed)]
    assert failed and all("crashed" in e.error for e in failed)
    assert steps_by_outcome(result)["failed at gate"] + steps_by_outcome(result)[
        "failed at validate"
    ] + steps_by_outcome(result)["failed at rollout"] == len(failed)
    errors = [e for n, e in rec.log if n == "on_error"]
    assert len(errors) == len(failed)
    assert all(isinstance(e["exception"], RuntimeError) and e["will_continue"] for e in errors)
    # Only evaluations that returned were counted, and all of them were.
    assert adapter.examples_evaluated == result.total_metric_calls


def test_raise_on_exception_stops_at_the_first_failure(models: SimulatedModels) -> None:
    task = RulebookTask(seed=2, n_train=20, n_val=8, n_test=0)
    with pytest.raises(RuntimeError, match="crashed"):
        flashevolve_nb.optimize(
            seed_candidate={"persona": "You are a helpful assistant.", "rules": ""},
            trainset=rulebook_inputs(task, "train"),
            valset=rulebook_inputs(task, "val"),
            adapter=TwoPartPromptAdapter(models.task_lm, task, fail_every=2),
            reflection_lm=models.reflection_lm,
            max_metric_calls=150,
            raise_on_exception=True,
        )


def test_a_failing_reflection_model_fails_proposals_not_the_run(
    data: RulebookData, models: SimulatedModels
) -> None:
    calls = Counter[str]()
    lock = threading.Lock()

    def flaky_reflection(prompt: str) -> str:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n % 2:
            raise ConnectionError("reflection endpoint unreachable")
        return models.reflection_lm(prompt)

    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=flaky_reflection,
        max_metric_calls=120,
    )
    check_result(result, n_val=12, budget=120)
    assert result.run is not None
    failed = [e for e in result.run.events if isinstance(e, ProposalFailed)]
    assert any("unreachable" in e.reason for e in failed)
    assert not any(isinstance(e, ItemFailed) for e in result.run.events)


# ---- proposers other than the reflection model ---------------------------------------------
class ProposingAdapter(TwoPartPromptAdapter):
    """Adds the rule the feedback names most often, as an adapter may in propose_new_texts."""

    def propose_new_texts(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> dict[str, str]:
        from flashevolve_nb.sim.rules import RULES

        by_feedback = {r.feedback: r for r in RULES}
        out = {}
        for c in components_to_update:
            seen = Counter(
                line.strip()
                for rec in reflective_dataset[c]
                for line in str(rec["Feedback"]).splitlines()
                if line.strip() in by_feedback
            )
            if seen:
                rule = by_feedback[seen.most_common(1)[0][0]]
                out[c] = f"{candidate[c]}\n{rule.phrasings[0]}".strip()
        return out


def test_the_adapters_own_proposer_needs_no_reflection_model(models: SimulatedModels) -> None:
    task = RulebookTask(seed=4, n_train=20, n_val=10, n_test=0)
    result = flashevolve_nb.optimize(
        seed_candidate=TWO_PART_SEED,
        trainset=rulebook_inputs(task, "train"),
        valset=rulebook_inputs(task, "val"),
        adapter=ProposingAdapter(models.task_lm, task),
        max_metric_calls=120,
        mode="sync",
    )
    check_result(result, n_val=10, budget=120)
    assert models.calls["reflection"] == 0
    assert result.num_candidates > 1 and result.best_score > result.val_aggregate_scores[0]


def test_a_custom_candidate_proposer_is_used(data: RulebookData, models: SimulatedModels) -> None:
    seen: list[list[str]] = []

    def proposer(
        candidate: dict[str, str], dataset: Mapping[str, Any], components: list[str]
    ) -> dict[str, str]:
        seen.append(components)
        return {c: candidate[c] + "\nEnd every answer with the word DONE." for c in components}

    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        custom_candidate_proposer=proposer,
        max_metric_calls=60,
        mode="sync",
    )
    assert seen and all(c == ["system_prompt"] for c in seen)
    check_result(result, n_val=12, budget=60)


# ---- schedules, determinism, stopping ---------------------------------------------------------
def sync_run(data: RulebookData, seed: int) -> OptimizeResult:
    with SimulatedModels(profile="vllm", seed=seed, time_scale=TIME_SCALE) as models:
        return flashevolve_nb.optimize(
            seed_candidate=data.seed_candidate,
            trainset=data.train,
            valset=data.val,
            adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
            reflection_lm=models.reflection_lm,
            max_metric_calls=100,
            seed=seed,
            mode="sync",
        )


def test_the_sync_schedule_is_gepas_and_reproducible_under_a_seed(data: RulebookData) -> None:
    a, b = sync_run(data, seed=5), sync_run(data, seed=5)
    assert a.run is not None
    live = 0
    for e in a.run.events:
        live += isinstance(e, StepStarted) - isinstance(e, StepFinished)
        assert live <= 1
    assert a.candidates == b.candidates and a.val_subscores == b.val_subscores
    assert a.parents == b.parents and a.total_metric_calls == b.total_metric_calls


def test_gepa_stoppers_and_selectors_read_the_state_view(
    data: RulebookData, models: SimulatedModels
) -> None:
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        candidate_selection_strategy=CurrentBestCandidateSelector(),
        stop_callbacks=[MaxMetricCallsStopper(40)],
        depth=2,
    )
    assert "MaxMetricCallsStopper" in result.finish_reason
    # the stopper only stops new iterations: at most the two in flight finish after 40
    assert 40 <= result.total_metric_calls <= 40 + 2 * (2 * 3 + 12)
    check_result(result, n_val=12, budget=40 + 2 * 18)


def test_run_dir_holds_a_gepa_readable_result_and_its_stop_file_stops(
    data: RulebookData, models: SimulatedModels, tmp_path: Path
) -> None:
    rec = Recorder()
    run_dir = tmp_path / "run"
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=80,
        run_dir=str(run_dir),
        callbacks=[rec],
    )
    saved = GEPAResult.from_dict(json.loads((run_dir / "result.json").read_text()))
    assert saved.candidates == list(result.candidates)
    assert saved.best_idx == result.best_idx
    assert json.loads((run_dir / "candidates.json").read_text()) == list(result.candidates)
    assert sum(n == "on_state_saved" for n, _ in rec.log) >= result.num_candidates
    with pytest.raises(FileExistsError, match="cannot resume"):
        flashevolve_nb.optimize(
            seed_candidate=data.seed_candidate, trainset=data.train, adapter=DefaultAdapter(
                model=models.task_lm, evaluator=data.evaluator
            ), reflection_lm=models.reflection_lm, max_metric_calls=10, run_dir=str(run_dir),
        )  # fmt: skip

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "gepa.stop").touch()
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=80,
        run_dir=stopped,
    )
    assert result.finish_reason.startswith("stop file")
    assert result.num_candidates == 1 and result.total_metric_calls == 12


def test_stale_proposals_meet_the_reflective_policy(
    data: RulebookData, models: SimulatedModels
) -> None:
    result = flashevolve_nb.optimize(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        # enough for steps to overlap (and go stale): a budget that pays for fewer than
        # call_budget_generations steps runs them one at a time
        max_metric_calls=600,
        policy="reflective",
        depth=8,
    )
    check_result(result, n_val=12, budget=600)
    assert result.run is not None
    decisions = [e for e in result.run.events if isinstance(e, PolicyDecision)]
    assert decisions and {d.policy for d in decisions} == {"reflective"}


@pytest.mark.asyncio
async def test_optimize_works_inside_a_running_loop_and_optimize_async_awaits(
    data: RulebookData, models: SimulatedModels
) -> None:
    kwargs: dict[str, Any] = {
        "seed_candidate": data.seed_candidate,
        "trainset": data.train,
        "valset": data.val,
        "adapter": DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        "reflection_lm": models.reflection_lm,
        "max_metric_calls": 40,
    }
    blocking = flashevolve_nb.optimize(**kwargs)  # a notebook cell: a loop is running here
    awaited = await flashevolve_nb.optimize_async(**kwargs)
    for r in (blocking, awaited):
        check_result(r, n_val=12, budget=40)
    assert asyncio.get_running_loop().is_running()


# ---- arguments ----------------------------------------------------------------------------------
def test_gepa_options_are_accepted_refused_or_ignored_explicitly(
    data: RulebookData, models: SimulatedModels
) -> None:
    from gepa.logging.logger import StdOutLogger

    base: dict[str, Any] = {
        "seed_candidate": data.seed_candidate,
        "trainset": data.train,
        "adapter": DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        "reflection_lm": models.reflection_lm,
    }
    with pytest.raises(ValueError, match=r"use_merge=True is a gepa\.optimize option"):
        flashevolve_nb.optimize(**base, max_metric_calls=10, use_merge=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_metric_call'"):
        flashevolve_nb.optimize(**base, max_metric_call=10)
    with pytest.raises(ValueError, match="give the run an end"):
        flashevolve_nb.optimize(**base)
    with pytest.raises(ValueError, match="task_lm and evaluator build"):
        flashevolve_nb.optimize(**base, task_lm=models.task_lm, max_metric_calls=10)
    with pytest.raises(ValueError, match="Missing placeholder"):
        flashevolve_nb.optimize(**base, max_metric_calls=10, reflection_prompt_template="x")
    # gepa defaults and logging-only options pass; valset defaults to the trainset
    result = flashevolve_nb.optimize(
        **base,
        max_metric_calls=30,
        use_merge=False,
        logger=StdOutLogger(),
        frontier_type="instance",
    )
    assert len(result.val_subscores[0]) == len(data.train)


# ---- the rest of the toolkit: controller, background runs --------------------------------------
def test_the_adaptive_controller_steers_an_adapter_run(
    data: RulebookData, models: SimulatedModels
) -> None:
    from flashevolve_nb.compat import prepare
    from flashevolve_nb.engine.controller import ControllerParams

    opt = prepare(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=200,
        controller="adaptive",
        controller_params=ControllerParams(interval=0.02),
    )
    assert opt.pipeline.controller.enabled
    result = asyncio.run(opt.run())
    check_result(result, n_val=12, budget=200)


def test_a_prepared_run_goes_on_in_the_background_with_the_runtime(
    data: RulebookData, models: SimulatedModels
) -> None:
    from flashevolve_nb.compat import prepare

    rec = Recorder()
    opt = prepare(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=100,
        callbacks=[rec],
    )
    run = flashevolve_nb.start(opt.pipeline)
    try:
        run.wait(timeout=120)
    finally:
        run.stop("cancel")
        opt.close()
    result = opt.result()
    check_result(result, n_val=12, budget=100)
    assert rec.log[-1][0] == "on_optimization_end"
    assert models.calls["task"] == result.total_metric_calls


def test_a_persons_proposal_joins_an_adapter_run_and_is_judged_like_any(
    data: RulebookData, models: SimulatedModels
) -> None:
    from flashevolve_nb.compat import prepare
    from flashevolve_nb.engine.events import Admitted, HumanSubmitted

    seeded = threading.Event()

    class SeedWatcher:
        def on_valset_evaluated(self, event: dict[str, Any]) -> None:
            if event["iteration"] == 0:
                seeded.set()

    opt = prepare(
        seed_candidate=data.seed_candidate,
        trainset=data.train,
        valset=data.val,
        adapter=DefaultAdapter(model=models.task_lm, evaluator=data.evaluator),
        reflection_lm=models.reflection_lm,
        max_metric_calls=200,
        callbacks=[SeedWatcher()],
    )
    run = flashevolve_nb.start(opt.pipeline)
    try:
        assert seeded.wait(timeout=60), "the seed was never evaluated"
        human = run.submit(
            "You are a helpful assistant. End every answer with the word DONE.", note="a hunch"
        )
        run.wait(timeout=120)
    finally:
        run.stop("cancel")
        opt.close()
    result = opt.result()
    check_result(result, n_val=12, budget=200)
    assert result.run is not None
    events = result.run.events
    step = next(e.step for e in events if isinstance(e, HumanSubmitted))
    outcome = next(e.outcome for e in events if isinstance(e, StepFinished) and e.step == step)
    assert outcome == "admitted" or outcome.startswith("gated out"), outcome
    if outcome == "admitted":
        assert any(isinstance(e, Admitted) and e.artifact_id == human.id for e in events)
        assert human.id in result.artifact_ids
