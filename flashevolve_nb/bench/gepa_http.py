"""The real ``gepa`` package, run against any OpenAI-compatible server over HTTP.

This is the baseline of ``flashevolve bench``: ``gepa.optimize`` itself, with
``gepa``'s own ``DefaultAdapter`` whose batch completion goes through
:class:`HttpChat` instead of LiteLLM. ``DefaultAdapter`` with a LiteLLM model
string calls ``LM.batch_complete(requests, max_workers=10)``, i.e. ten
requests at a time on a thread pool; :class:`HttpChat` has the same method
and does exactly that with the real ``openai`` client, so the schedule is
gepa's default one while the requests reach our server and get counted.

The reflection model goes through the same server. The simulator's
reflection model was scripted for our reflection prompt, so by default (for
the simulator) gepa's prompt is restated in ours first
(:func:`~flashevolve_nb.compat.simulated.to_simulator_prompt`, the same
translation ``SimulatedModels`` makes; a plain-text rewrite, no side channel).
Pass ``restate_reflection=False`` against a real model, which reads gepa's
prompt as it is.

Counting is gepa's own: proposals from ``on_proposal_end``, accepted from
``on_candidate_accepted``, validation sweeps from ``on_valset_evaluated``,
metric calls from the result's ``total_metric_calls``.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, cast

import openai

from flashevolve_nb.bench.figures import RunBudget, RunFigures
from flashevolve_nb.compat.simulated import RulebookData, rulebook_for_gepa, to_simulator_prompt
from flashevolve_nb.sim import Instance

__all__ = ["DEFAULT_SIZES", "HttpChat", "RequestExtra", "TaskSizes", "held_out_score", "run_gepa"]

RequestExtra = Callable[[str], Mapping[str, Any]]
"""Kind of call (``task``, ``reflection``) -> extra request fields for it, e.g.
``{"max_tokens": 512, "extra_body": {"ignore_eos": True}}``."""


@dataclass(frozen=True, slots=True)
class TaskSizes:
    """Sizes of the rulebook task's splits (the same for every system of a run)."""

    n_train: int = 60
    n_val: int = 40
    n_test: int = 100


DEFAULT_SIZES = TaskSizes()


class HttpChat:
    """Blocking chat completions over HTTP with the ``openai`` client; thread-safe.

    Counts requests and the server's reported tokens. ``batch_complete`` has
    the signature of ``gepa.lm.LM.batch_complete`` (what ``DefaultAdapter``
    calls for a LiteLLM model), and runs the batch on ``max_workers`` threads.
    The API key is handed to the client and kept nowhere else.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        request_extra: RequestExtra | None = None,
        timeout: float = 600.0,
        max_retries: int = 3,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=max_retries
        )
        self._extra = request_extra
        self._lock = threading.Lock()
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.slowest = 0.0
        """Wall seconds of the slowest request (retries included): a stall shows here."""

    def complete(self, messages: Sequence[Mapping[str, Any]], kind: str = "task") -> str:
        extra = dict(self._extra(kind)) if self._extra is not None else {}
        t0 = time.perf_counter()
        reply = self._client.chat.completions.create(
            model=self.model,
            messages=[dict(m) for m in messages],  # type: ignore[misc]
            **extra,
        )
        usage = reply.usage
        took = time.perf_counter() - t0
        with self._lock:
            self.requests += 1
            self.slowest = max(self.slowest, took)
            if usage is not None:
                self.prompt_tokens += usage.prompt_tokens
                self.completion_tokens += usage.completion_tokens
        return (reply.choices[0].message.content or "").strip()

    def batch_complete(
        self, messages_list: list[list[dict[str, Any]]], max_workers: int = 10, **kwargs: Any
    ) -> list[str]:
        """Answers in order, ``max_workers`` requests at a time (LiteLLM's batch shape)."""
        if not messages_list:
            return []
        with ThreadPoolExecutor(max(1, min(max_workers, len(messages_list)))) as pool:
            return list(pool.map(self.complete, messages_list))

    def __call__(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """``DefaultAdapter``'s ``ChatCompletionCallable`` shape (one request)."""
        return self.complete(messages, "task")

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"HttpChat({self.base_url!r}, model={self.model!r})"


def _adapter(chat: HttpChat, data: RulebookData, threads: int) -> Any:
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter

    evaluator: Any = data.evaluator  # a Judgement is gepa's EvaluationResult, field for field
    adapter: Any = DefaultAdapter(model=chat, evaluator=evaluator, max_litellm_workers=threads)
    # DefaultAdapter sends a model *string* through gepa.lm.LM.batch_complete; giving it
    # an object with that method takes the very same code path, over our HTTP client.
    adapter._lm = chat
    return adapter


class _Tally:
    """gepa callbacks: what it proposed, accepted and validated, and when."""

    def __init__(self, chat: HttpChat, time_scale: float) -> None:
        self.chat = chat
        self.time_scale = time_scale
        self.t0 = time.perf_counter()
        self.proposals = 0
        self.accepted = 0
        self.val_sweeps = 0
        self.curve: list[tuple[float, float]] = []
        self.best = float("-inf")
        self.seed_val = float("nan")
        self.wasted = 0
        self._iter_tokens = 0
        self._iter_accepted = False

    def sim_now(self) -> float:
        return (time.perf_counter() - self.t0) * self.time_scale

    def on_iteration_start(self, event: Mapping[str, Any]) -> None:
        self._iter_tokens = self.chat.completion_tokens
        self._iter_accepted = False

    def on_iteration_end(self, event: Mapping[str, Any]) -> None:
        if not self._iter_accepted:
            self.wasted += self.chat.completion_tokens - self._iter_tokens

    def on_proposal_end(self, event: Mapping[str, Any]) -> None:
        self.proposals += 1

    def on_candidate_accepted(self, event: Mapping[str, Any]) -> None:
        self.accepted += 1
        self._iter_accepted = True

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        self.val_sweeps += 1
        score = float(event["average_score"])
        if self.val_sweeps == 1:
            self.seed_val = score
        if score > self.best:
            self.best = score
            self.curve.append((self.sim_now(), score))


class _Stop:
    """gepa stop condition: the real-time limit derived from the budget."""

    def __init__(self, tally: _Tally, real_seconds: float) -> None:
        self.tally = tally
        self.real_seconds = real_seconds

    def __call__(self, gepa_state: Any) -> bool:
        return time.perf_counter() - self.tally.t0 >= self.real_seconds


class _Quiet:
    def log(self, message: str) -> None:
        pass


def held_out_score(
    chat: HttpChat, data: RulebookData, candidate: Mapping[str, str], threads: int = 10
) -> float:
    """Mean score of ``candidate`` on the test split, ``threads`` requests at a time.

    Outside any budget, and the same function for every system: the same
    messages the task is optimised with (``RulebookTask.messages``).
    """
    task = data.task
    rows = list(task.test)

    def one(inst: Instance) -> float:
        return task.score(inst, chat.complete(task.messages(candidate, inst), "task")).score

    with ThreadPoolExecutor(threads) as pool:
        scores = list(pool.map(one, rows))
    return sum(scores) / len(scores)


def run_gepa(
    base_url: str,
    model: str,
    *,
    seed: int,
    budget: RunBudget,
    time_scale: float = 1.0,
    threads: int = 10,
    request_extra: RequestExtra | None = None,
    sizes: TaskSizes = DEFAULT_SIZES,
    api_key: str | None = None,
    restate_reflection: bool = True,
    held_out: bool = True,
    minibatch_size: int = 3,
    after_run: Callable[[], None] | None = None,
    before_run: Callable[[], None] | None = None,
) -> RunFigures:
    """Run the real ``gepa.optimize`` on the rulebook task against ``base_url``; block.

    What part D (and anyone else) may rely on, as a stable contract:

    - ``base_url``: any OpenAI-compatible ``.../v1`` URL; ``model`` its model name.
    - The task is ``rulebook_for_gepa(seed, **sizes)``; gepa gets ``seed=seed``,
      ``reflection_minibatch_size=minibatch_size``, pareto selection, no merge
      (gepa's defaults otherwise).
    - ``budget``: ``sim_minutes`` (real seconds = minutes * 60 / ``time_scale``;
      pass ``time_scale=1`` against a real engine), ``metric_calls`` (gepa's
      ``max_metric_calls``) and/or ``wall_seconds``; whichever comes first. gepa
      checks time between iterations, so a run may overshoot by one iteration.
    - ``threads``: requests in flight per batch evaluation (gepa's LiteLLM default, 10).
    - ``request_extra(kind)`` is merged into every request's fields, ``kind`` being
      ``"task"`` or ``"reflection"`` (e.g. ``max_tokens`` and
      ``extra_body={"ignore_eos": True}``); the held-out evaluation uses ``"task"``.
    - Returns :class:`RunFigures` with ``system="gepa"``: proposals, accepted,
      val_sweeps, metric_calls, wall_seconds, sim_seconds (= wall * time_scale),
      tokens as the server reported them, best/seed validation score, the best
      score curve and (when ``held_out``) the held-out test scores.
    - ``before_run()`` is called just before ``gepa.optimize`` starts and
      ``after_run()`` once it ended, before the held-out evaluation (a benchmark
      opens and closes its measurement window there).
    """
    from gepa.api import optimize

    data = rulebook_for_gepa(seed=seed, n_train=sizes.n_train, n_val=sizes.n_val,
                             n_test=sizes.n_test)  # fmt: skip
    chat = HttpChat(base_url, model, api_key=api_key, request_extra=request_extra)
    try:
        adapter = _adapter(chat, data, threads)
        tally = _Tally(chat, time_scale)

        def reflection_lm(prompt: str | list[dict[str, Any]]) -> str:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            if restate_reflection:
                messages = [
                    {**m, "content": to_simulator_prompt(str(m.get("content", "")))}
                    if m.get("role") == "user"
                    else m
                    for m in messages
                ]
            return chat.complete(messages, "reflection")

        real = budget.real_seconds(time_scale)
        stops = [_Stop(tally, real)] if real is not None else []
        if before_run is not None:
            before_run()
        tally.t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # gepa prints every iteration
            result: Any = optimize(
                seed_candidate=data.seed_candidate,
                trainset=data.train,
                valset=data.val,
                adapter=adapter,
                reflection_lm=reflection_lm,
                reflection_minibatch_size=minibatch_size,
                max_metric_calls=budget.metric_calls,
                stop_callbacks=stops or None,
                callbacks=[cast(Any, tally)],
                logger=_Quiet(),
                seed=seed,
            )
        wall = time.perf_counter() - tally.t0
        requests, prompt_t, completion_t = chat.requests, chat.prompt_tokens, chat.completion_tokens
        slowest = chat.slowest
        if after_run is not None:
            after_run()
        best = dict(result.best_candidate)
        best_test = seed_test = None
        if held_out:
            best_test = held_out_score(chat, data, best, threads)
            seed_test = held_out_score(chat, data, data.seed_candidate, threads)
        return RunFigures(
            system="gepa",
            seed=seed,
            time_scale=time_scale,
            wall_seconds=wall,
            sim_seconds=wall * time_scale,
            proposals=tally.proposals,
            accepted=tally.accepted,
            val_sweeps=tally.val_sweeps,
            metric_calls=int(result.total_metric_calls or 0),
            llm_requests=requests,
            prompt_tokens=prompt_t,
            completion_tokens=completion_t,
            wasted_tokens=tally.wasted,
            seed_val=tally.seed_val,
            best_val=float(result.val_aggregate_scores[result.best_idx]),
            best_test=best_test,
            seed_test=seed_test,
            curve=tuple(tally.curve),
            notes=(
                f"gepa {version('gepa')}, DefaultAdapter, {threads} threads per batch",
                f"slowest request {slowest:.2f} s wall ({slowest * time_scale:.0f} s simulated)",
            ),
        )
    finally:
        chat.close()
