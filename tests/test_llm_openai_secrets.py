"""API keys never show: not in reprs, events, logs, errors, tracebacks or pickles."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import traceback
from collections.abc import Callable

import pytest

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine.events import LLMRetry
from flashevolve_nb.llm.openai_backend import BackendError, OpenAIBackend
from flashevolve_nb.llm.retry import RetryPolicy
from flashevolve_nb.llm.roles import Backends
from flashevolve_nb.llm.secret import Secret, redact_url
from flashevolve_nb.sim.http_server import SimHTTPServer

KEY = "sk-test-0123456789-TOP-SECRET"
WRONG = "sk-wrong-9876543210-ALSO-SECRET"


def test_a_secret_never_shows_itself() -> None:
    s = Secret(KEY)
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", format(s, ""), str([s]), str({"k": s})):
        assert KEY not in shown and "***" in shown
    assert s.reveal() == KEY and s == Secret(KEY) and s != Secret(WRONG)
    assert s.scrub(f"key={KEY}!") == "key=***!"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(s)
    assert redact_url("http://user:pw@127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


@pytest.mark.asyncio
async def test_no_key_in_reprs_events_logs_or_errors(
    sim_server_factory: Callable[..., SimHTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    server = sim_server_factory(api_key=KEY, time_scale=600.0)
    server.faults.inject("500", "429")
    clock = Clock(600.0)
    backends = Backends.from_config(
        env={
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": KEY,
            "FLASHEVOLVE_MODEL": "sim-rulebook-1",
        },
        clock=clock,
        retry=RetryPolicy(backoff=0.01),
    )
    config = DemoConfig(
        seed=0, minutes=60, time_scale=600.0, n_train=10, n_val=5, n_test=5,
        max_metric_calls=40, workers=2, depth=2,
    )  # fmt: skip
    demo = build_demo(config, clock=clock, llms={"task": backends.task})
    result = await demo.run()
    # The key was used (the server requires it) and retries happened.
    assert server.counters().answered > 0
    assert any(isinstance(e, LLMRetry) for e in result.events)

    wrong = OpenAIBackend(model="sim-rulebook-1", base_url=server.base_url, api_key=WRONG)
    with pytest.raises(BackendError) as err:
        await wrong.chat([{"role": "user", "content": "hi"}])
    await backends.aclose()
    await wrong.aclose()

    config_task = backends.stats()["task"]
    cfg = backends.task.config  # type: ignore[attr-defined]
    shown = [
        repr(backends),
        repr(backends.task),
        repr(cfg),
        str(cfg),
        repr(dataclasses.asdict(cfg)),
        repr(config_task),
        repr(wrong),
        repr(server),
        *(repr(e) for e in result.events),
        *(repr(e.to_row()) for e in result.events),
        result.events_frame().to_string(),
        str(err.value),
        "".join(traceback.format_exception(err.value)),
        caplog.text,
    ]
    assert caplog.records, "debug logging was on: the scan must have seen log lines"
    for text in shown:
        assert KEY not in text and WRONG not in text
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(cfg)
