"""The offline simulator in the shapes ``gepa`` takes, for side-by-side runs without a GPU.

``gepa`` wants a task model ``messages -> str``, a reflection model
``prompt -> str`` and data its adapter understands. :class:`SimulatedModels`
gives both models as plain blocking callables, served by one
:class:`~flashevolve_nb.sim.Simulator` on an event loop of its own thread, so
``gepa.optimize`` (one thread) and ``flashevolve_nb.optimize`` (many) can be
timed against the very same simulated server. A call blocks for the simulated
latency divided by ``time_scale``.

The simulated reflection model was scripted for our reflection prompt, not
``gepa``'s, so :class:`GepaPromptReader` restates ``gepa``'s default prompt
(current instruction, examples with their feedback) in ours before the model
reads it; anything else goes through unchanged. This is a translation in
plain sight, not a side channel: the model still decides from the text alone.

:func:`rulebook_for_gepa` turns the simulator's rulebook task into
``DefaultAdapter`` data (``input``, ``additional_context``, ``answer`` plus the
hidden rules) and an evaluator returning score and feedback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.protocol import LLM, Completion, Message
from flashevolve_nb.sim import Instance, RulebookTask, Simulator
from flashevolve_nb.workloads.gepa.prompts import (
    REFLECTION_MARKER,
    ReflectionExample,
    reflection_prompt,
)

__all__ = [
    "GepaPromptReader",
    "Judgement",
    "RulebookData",
    "SimulatedModels",
    "rulebook_for_gepa",
    "to_simulator_prompt",
]

T = TypeVar("T")

_GEPA_OPENING = "I provided an assistant with the following instructions"
_EXAMPLE = re.compile(r"^# Example \d+\s*$", re.MULTILINE)
_KEY = re.compile(r"^## (.+?)\s*$", re.MULTILINE)


def _current_instruction(prompt: str) -> str | None:
    start = prompt.find("```\n", prompt.find(_GEPA_OPENING))
    if start < 0:
        return None
    end = prompt.find("\n```", start + 4)
    return prompt[start + 4 : end] if end >= 0 else None


def _examples(prompt: str) -> list[ReflectionExample]:
    starts = [m.start() for m in _EXAMPLE.finditer(prompt)]
    out = []
    for i, start in enumerate(starts):
        section = prompt[start : starts[i + 1] if i + 1 < len(starts) else len(prompt)]
        keys = list(_KEY.finditer(section))
        fields: dict[str, str] = {}
        for j, key in enumerate(keys):
            # the last key holding a name wins: feedback comes after outputs that may
            # themselves contain "## " lines
            end = keys[j + 1].start() if j + 1 < len(keys) else len(section)
            fields[key.group(1).strip().lower()] = section[key.end() : end].strip()

        def pick(word: str, fields: dict[str, str] = fields) -> str:
            return next((v for k, v in reversed(fields.items()) if word in k), "")

        score = re.search(r"[-+]?\d*\.?\d+", pick("score"))
        out.append(
            ReflectionExample(
                input=pick("input"),
                output=pick("output"),
                score=float(score.group()) if score else 0.0,
                feedback=pick("feedback"),
            )
        )
    return out


def to_simulator_prompt(prompt: str) -> str:
    """``gepa``'s default reflection prompt restated as ours; any other text unchanged."""
    if REFLECTION_MARKER in prompt or _GEPA_OPENING not in prompt:
        return prompt
    current = _current_instruction(prompt)
    examples = _examples(prompt)
    if current is None or not examples:
        return prompt
    return reflection_prompt("instructions", current, examples)


class GepaPromptReader:
    """A simulated backend that reads ``gepa``'s reflection prompt (restated as ours)."""

    simulated = True

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    @property
    def name(self) -> str:
        return f"{self.llm.name}, reading gepa's prompt"

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        restated = [
            {**m, "content": to_simulator_prompt(m.get("content", ""))}
            if m.get("role") == "user"
            else m
            for m in messages
        ]
        return await self.llm.chat(restated, **params)

    def __repr__(self) -> str:
        return f"GepaPromptReader({self.llm!r})"


class SimulatedModels:
    """A simulated task and reflection model as blocking callables (``gepa``'s shapes).

    ``profile`` (``vllm``, ``api``), ``seed`` and ``time_scale`` (simulated
    seconds per real second) are the simulator's. Close it (or use ``with``)
    to stop its thread. Safe to call from many threads at once.
    """

    def __init__(self, profile: str = "vllm", seed: int = 0, time_scale: float = 100.0) -> None:
        self.clock = Clock(time_scale)
        self.simulator = Simulator(profile=profile, seed=seed, clock=self.clock)
        self._task = self.simulator.llm("task")
        self._reflection = GepaPromptReader(self.simulator.llm("reflection"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="flashevolve-simulated-models", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._on_loop(self._start_clock())

    async def _start_clock(self) -> None:
        self.clock.start()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("these simulated models are closed")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._pending.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending.discard(future)

    def _count(self, role: str) -> None:
        with self._lock:
            self.calls[role] += 1

    def task_lm(self, messages: Sequence[Mapping[str, str]]) -> str:
        """``gepa``'s ``ChatCompletionCallable``: messages in, the answer text out."""
        self._count("task")
        return self._on_loop(self._task.chat(list(messages))).text

    def reflection_lm(self, prompt: str | Sequence[Mapping[str, str]]) -> str:
        """``gepa``'s ``LanguageModel``: a prompt (or messages) in, the answer text out."""
        self._count("reflection")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return self._on_loop(self._reflection.chat(list(messages))).text

    @property
    def sim_seconds(self) -> float:
        """Simulated seconds since these models were made."""
        return self.clock.now()

    def close(self) -> None:
        """Stop the server; calls still waiting for an answer raise ``CancelledError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            # Wakes the caller at once, whether or not the loop ever gets to the request.
            future.cancel()
        asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SimulatedModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimulatedModels({self.simulator!r}, time_scale={self.clock.time_scale:g})"


async def _cancel_all() -> None:
    """Cancel every other task of the running loop and wait until they are done."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Judgement(NamedTuple):
    """What ``DefaultAdapter``'s evaluator returns (``gepa``'s ``EvaluationResult`` fields)."""

    score: float
    feedback: str
    objective_scores: dict[str, float] | None = None


@dataclass(frozen=True)
class RulebookData:
    """The rulebook task for ``gepa``'s ``DefaultAdapter``."""

    task: RulebookTask
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    test: list[dict[str, Any]]
    evaluator: Callable[[Mapping[str, Any], str], Judgement]
    seed_candidate: dict[str, str]


def rulebook_for_gepa(
    seed: int = 0, n_train: int = 60, n_val: int = 40, n_test: int = 100
) -> RulebookData:
    task = RulebookTask(seed=seed, n_train=n_train, n_val=n_val, n_test=n_test)

    def row(inst: Instance) -> dict[str, Any]:
        return {
            "input": inst.input,
            "additional_context": {},
            "answer": "",
            "id": inst.id,
            "rules": list(inst.rules),
        }

    def evaluator(data: Mapping[str, Any], response: str) -> Judgement:
        scored = task.score(Instance(data["id"], data["input"], tuple(data["rules"])), response)
        return Judgement(scored.score, scored.feedback)

    return RulebookData(
        task=task,
        train=[row(i) for i in task.train],
        val=[row(i) for i in task.val],
        test=[row(i) for i in task.test],
        evaluator=evaluator,
        seed_candidate=task.seed_candidate(),
    )
