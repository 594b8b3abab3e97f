"""The simulator as an LLM backend: protocol, seeded determinism, token limits."""

from __future__ import annotations

import asyncio
import random

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.llm.protocol import LLM, Completion, Message
from flashevolve_nb.sim import RateLimited, RulebookTask, SimulatedLLM, Simulator, get_profile
from flashevolve_nb.workloads.gepa.prompts import ReflectionExample, reflection_prompt

TASK = RulebookTask(seed=0)


def conversations() -> list[list[Message]]:
    candidate = {"system_prompt": "Answer briefly. End every answer with the word DONE."}
    convs: list[list[Message]] = [list(TASK.messages(candidate, i)) for i in TASK.val[:12]]
    example = ReflectionExample(TASK.val[0].input, "x", 0.0, "Violated rules:\nNone.")
    convs.append([{"role": "user", "content": reflection_prompt("p", "Be nice.", [example])}])
    convs.append([{"role": "user", "content": "What is the capital of France?"}])
    return convs


async def answers(order: list[int], seed: int = 7) -> dict[int, tuple[str, int, int, str]]:
    sim = Simulator("vllm", seed=seed)
    llm = sim.llm("task")
    convs = conversations()

    async def one(k: int, delay: float) -> tuple[int, Completion]:
        await asyncio.sleep(delay)
        return k, await llm.chat(convs[k])

    done = await asyncio.gather(*(one(k, 0.1 * pos) for pos, k in enumerate(order)))
    return {
        k: (c.text, c.usage.prompt_tokens, c.usage.completion_tokens, c.finish_reason)
        for k, c in done
    }


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_same_seed_same_answers_in_any_order() -> None:
    n = len(conversations())
    forward = await answers(list(range(n)))
    backward = await answers(list(reversed(range(n))))
    shuffled = list(range(n))
    random.Random(1).shuffle(shuffled)
    assert forward == backward == await answers(shuffled)
    assert forward != await answers(list(range(n)), seed=8)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_completion_fields_and_protocol() -> None:
    sim = Simulator(seed=0)
    llm = sim.llm("reflection")
    assert isinstance(llm, LLM) and isinstance(llm, SimulatedLLM)
    assert llm.simulated and llm.name == "simulated vllm (reflection)"
    messages = TASK.messages(TASK.seed_candidate(), TASK.val[0])
    completion = await llm.chat(messages)
    assert completion.model == "sim-rulebook-1" and completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == sum(len(m["content"]) // 4 + 4 for m in messages)
    assert completion.usage.completion_tokens >= 8
    expected = completion.usage.completion_tokens + 0.01 * completion.usage.prompt_tokens
    assert completion.latency == pytest.approx(expected * (0.012 + 0.00012), abs=1e-3)
    assert sim.server.stats().requests_served == 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_max_tokens_cuts_the_answer() -> None:
    sim = Simulator(seed=0)
    llm = sim.llm()
    messages = TASK.messages(TASK.seed_candidate(), TASK.val[1])
    full = await Simulator(seed=0).llm().chat(messages)
    cut = await llm.chat(messages, max_tokens=5)
    assert full.usage.completion_tokens > 5
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 5
    assert len(cut.text) < len(full.text) and full.text.startswith(cut.text)
    with pytest.raises(ValueError, match="max_tokens"):
        await llm.chat(messages, max_tokens=0)


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_temperature_zero_repeats_and_sampling_varies() -> None:
    llm = Simulator(seed=0).llm()
    messages = TASK.messages(TASK.seed_candidate(), TASK.val[2])
    greedy = {(await llm.chat(messages, temperature=0)).text for _ in range(5)}
    sampled = {(await llm.chat(messages, temperature=1.0)).text for _ in range(8)}
    assert len(greedy) == 1 and len(sampled) > 1


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_api_profile_backend_and_rate_limit() -> None:
    sim = Simulator(get_profile("api", rpm_limit=1), seed=0, clock=Clock())
    llm = sim.llm()
    completion = await llm.chat([{"role": "user", "content": "hi"}])
    assert completion.latency > 0 and llm.name == "simulated api (task)"
    with pytest.raises(RateLimited):
        await llm.chat([{"role": "user", "content": "hi again"}])
