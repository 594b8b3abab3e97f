"""ACE through OpenAIBackend over real HTTP: the loopback server answers ACE's roles.

The server (``flashevolve sim-server``) reads ACE's prompts as the in-process
simulated models do (rule one of SIMULATOR.md): the same conversation gets the
same answer, and an asynchronous ACE run over HTTP improves its playbook.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    LLMCallFinished,
    ProposalFailed,
    ProposalMade,
)
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.protocol import Message
from flashevolve_nb.sim import RulebookTask, Simulator
from flashevolve_nb.sim.http_server import SimHTTPServer
from flashevolve_nb.workloads.ace.demo import build_ace_demo
from flashevolve_nb.workloads.ace.playbook import Playbook
from flashevolve_nb.workloads.ace.prompts import (
    Generation,
    curator_prompt,
    generator_messages,
    parse_curator_answer,
    parse_generator_answer,
    parse_reflector_answer,
    reflector_prompt,
)
from flashevolve_nb.workloads.ace.simulated import AceSimulatedLLM

MODEL = "sim-rulebook-1"
SCALE = 600.0
PLAYBOOK = Playbook.parse(
    "## formatting\n"
    "[b-1] helpful=1 harmful=0 :: End every answer with the word DONE.\n"
    "[b-2] helpful=0 harmful=0 :: Use ISO dates.\n"
    "\n## guidelines\n"
    "[b-3] helpful=0 harmful=0 :: Read the request carefully before answering.\n"
)


def backend(server: SimHTTPServer, clock: Clock) -> OpenAIBackend:
    return OpenAIBackend(model=MODEL, base_url=server.base_url, clock=clock, timeout=5.0, seed=0)


async def role_prompts() -> list[list[Message]]:
    """One conversation per ACE role, written by the real prompt builders."""
    task = RulebookTask(seed=0, n_train=6, n_val=2, n_test=2)
    generator = AceSimulatedLLM(Simulator(seed=5, clock=Clock(10_000)), "generator")
    generations = []
    for inst in task.train[:3]:
        reply = await generator.chat(generator_messages(PLAYBOOK.render(), inst.input))
        answer, cited = parse_generator_answer(reply.text)
        scored = task.score(inst, answer)
        generations.append(
            Generation(inst.id, inst.input, answer, cited, scored.score, scored.feedback)
        )
    reflector_text = reflector_prompt(PLAYBOOK, generations)
    reflection = parse_reflector_answer(
        (await generator.chat([{"role": "user", "content": reflector_text}])).text
    ).value
    assert reflection is not None
    return [
        generator_messages(PLAYBOOK.render(), task.train[3].input),
        [{"role": "user", "content": reflector_text}],
        [{"role": "user", "content": curator_prompt(PLAYBOOK, reflection)}],
    ]


@pytest.mark.asyncio
async def test_the_server_answers_each_ace_role_as_the_in_process_model_does(
    sim_server: SimHTTPServer,
) -> None:
    conversations = await role_prompts()
    llm = backend(sim_server, Clock(SCALE))
    local = AceSimulatedLLM(Simulator(seed=0, clock=Clock(10_000)), "any")
    answers = []
    for messages in conversations:
        remote = await llm.chat(messages)
        here = await local.chat(messages)
        assert (remote.text, remote.finish_reason) == (here.text, here.finish_reason)
        assert remote.usage == here.usage
        answers.append(remote.text)
    await llm.aclose()
    generator, reflector, curator = answers
    # Each role's answer, in the form its parser takes, not a generic one.
    assert generator.startswith("BULLETS: ") and "\nANSWER:\n" in generator
    assert parse_reflector_answer(reflector).value is not None
    assert parse_curator_answer(curator).value is not None
    assert sim_server.counters().answered == 3


@pytest.mark.asyncio
async def test_an_async_ace_run_over_http_improves_its_playbook(
    sim_server_factory: Callable[..., SimHTTPServer],
) -> None:
    server = sim_server_factory(seed=0, time_scale=SCALE)
    clock = Clock(SCALE)
    llm = backend(server, clock)
    config = DemoConfig(
        mode="async", seed=0, minutes=60, time_scale=SCALE, n_train=30, n_val=12, n_test=5,
        workers=4, depth=8, controller="fixed", max_metric_calls=400,
    )  # fmt: skip
    demo = build_ace_demo(config, clock=clock, llms=llm)
    result = await demo.run()
    await llm.aclose()
    events = result.events
    s = result.stats

    # A few real seconds: the metric calls run out first, unless the machine is slow.
    assert "max_metric_calls" in result.finish_reason or "max_sim_seconds" in result.finish_reason
    assert s.accepted >= 2 and s.best_score > s.seed_score + 0.2
    # Every role went through the server and every call was answered.
    finished = [e for e in events if isinstance(e, LLMCallFinished)]
    roles = Counter(e.role for e in finished if e.ok)
    assert roles["generator"] > 0 and roles["reflector"] > 0 and roles["curator"] > 0
    assert all(e.ok for e in finished if e.finish_reason != "cancelled")
    assert not [e for e in events if isinstance(e, ItemFailed)]
    # The server answered every request but those the end of the run cut off.
    cut = [e for e in finished if e.finish_reason == "cancelled"]
    c, b = server.counters(), llm.stats()
    assert c.requests == b.attempts and b.retries == b.failed_calls == 0 and not c.errors
    assert c.requests >= c.answered >= b.calls > 0 and c.requests - b.calls <= len(cut)
    # The Reflector's and Curator's answers parsed, but for the few the scripted
    # roles spoil on purpose (no JSON, cut off): the server answered them as ACE's.
    failed = [e for e in events if isinstance(e, ProposalFailed)]
    reflect_or_curate = roles["reflector"] + roles["curator"]
    assert len(failed) <= 0.2 * reflect_or_curate
    assert all("JSON" in e.reason or "cut off" in e.reason for e in failed), failed
    made = [e for e in events if isinstance(e, ProposalMade)]
    assert len(made) == s.proposals > 0
    # Every admission is in the pool, in order.
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert [e.artifact_id for e in admitted] == [x.artifact.id for x in result.pool.entries]
