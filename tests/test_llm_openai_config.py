"""Backend settings from Python, a TOML file and the environment; one backend per role."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flashevolve_nb.llm.config import OpenAIConfig, load_role_configs
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.retry import RetryPolicy, parse_retry_after
from flashevolve_nb.llm.roles import Backends
from flashevolve_nb.llm.secret import Secret
from flashevolve_nb.sim.http_server import SimHTTPServer

CONFIG = """
[llm]
base_url = ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1/"]
model = "Qwen/Qwen3-8B"
api_key_env = "MY_VLLM_KEY"
max_concurrency = 32
cost_per_completion_token = 1e-6

[llm.retry]
max_retries = 2
backoff = 0.1

[llm.extra_body.chat_template_kwargs]
enable_thinking = false

[llm.reflection]
model = "Qwen/Qwen3-32B"
timeout = 900.0
"""


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "flashevolve.toml"
    path.write_text(text)
    return path


def test_a_file_gives_every_role_its_settings(tmp_path: Path) -> None:
    roles = load_role_configs(write(tmp_path), env={"MY_VLLM_KEY": "sk-file"})
    task, reflection, repair = roles["task"], roles["reflection"], roles["repair"]
    assert task.endpoints == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    assert task.model == repair.model == "Qwen/Qwen3-8B"
    assert reflection.model == "Qwen/Qwen3-32B" and reflection.timeout == 900.0
    assert task.api_key == Secret("sk-file") and task.max_concurrency == 32
    assert task.retry == RetryPolicy(max_retries=2, backoff=0.1)
    assert task.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    assert task.tracks_cost and task.cost_per_completion_token == 1e-6


def test_the_environment_beats_the_file_and_arguments_beat_both(tmp_path: Path) -> None:
    env = {
        "FLASHEVOLVE_CONFIG": str(write(tmp_path)),
        "MY_VLLM_KEY": "sk-file",
        "OPENAI_BASE_URL": "http://127.0.0.1:9000/v1,http://127.0.0.1:9001/v1",
        "OPENAI_API_KEY": "sk-env",
        "FLASHEVOLVE_REPAIR_MODEL": "small-repair-model",
        "FLASHEVOLVE_REPAIR_API_KEY": "sk-repair",
    }
    roles = load_role_configs(
        env=env, max_concurrency=4, roles={"reflection": {"model": "from-python"}}
    )
    assert roles["task"].endpoints == ("http://127.0.0.1:9000/v1", "http://127.0.0.1:9001/v1")
    assert roles["task"].api_key == Secret("sk-env")
    assert roles["repair"].model == "small-repair-model"
    assert roles["repair"].api_key == Secret("sk-repair")
    assert roles["reflection"].model == "from-python"
    assert {c.max_concurrency for c in roles.values()} == {4}
    assert roles["task"].model == "Qwen/Qwen3-8B"  # from the file


def test_environment_alone_is_enough() -> None:
    roles = load_role_configs(
        env={"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1", "FLASHEVOLVE_MODEL": "m"}
    )
    assert {c.model for c in roles.values()} == {"m"}
    assert roles["task"].api_key is None


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "[llm]\nmodel = 'm'\ntemprature = 0.2\n",
            {},
            r"unknown LLM setting\(s\) \['temprature'\]",
        ),
        ("[llm]\nmodel = 'm'\napi_key_env = 'NOPE'\n", {}, "NOPE.*unset"),
        ("[llm]\nbase_url = 'http://127.0.0.1:8000/v1'\n", {}, "needs a model name"),
        ("[llm]\nmodel = 'm'\nbase_url = '127.0.0.1:8000'\n", {}, "not an http"),
        ("[llm]\nmodel = 'm'\n[llm.retry]\ntries = 3\n", {}, "unknown retry setting"),
        ("[models]\nmodel = 'm'\n", {}, r"no \[llm\] table"),
        ("[llm\n", {}, "not valid TOML"),
    ],
)
def test_mistakes_in_the_file_say_what_is_wrong(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_role_configs(write(tmp_path, text), env=env)


def test_a_missing_file_and_an_unknown_role_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_role_configs(tmp_path / "nope.toml", env={})
    with pytest.raises(ValueError, match="unknown role"):
        load_role_configs(env={"FLASHEVOLVE_MODEL": "m"}, roles={"critic": {}})


def test_python_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIConfig(model="m", max_concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        OpenAIConfig(model="m", timeout=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)
    c = OpenAIConfig(model="m", base_url="http://a:1/v1, http://b:2/v1", api_key="sk-x")
    assert c.endpoints == ("http://a:1/v1", "http://b:2/v1")
    assert isinstance(c.api_key, Secret) and c.api_key.reveal() == "sk-x"


def test_backoff_grows_with_jitter_and_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(backoff=1.0, multiplier=2.0, max_backoff=5.0, jitter=0.5)
    rng = random.Random(0)
    for n, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        d = policy.delay(n, rng)
        assert full * 0.5 <= d <= full
    assert policy.delay(1, rng, retry_after=3.0) >= 3.0
    assert RetryPolicy(jitter=0.0, backoff=0.5).delay(2, rng) == 1.0


def test_retry_after_headers_in_every_form() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "0.05"}) == 0.05
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, now) == 30.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.asyncio
async def test_roles_with_the_same_settings_share_one_backend(
    sim_server: SimHTTPServer,
) -> None:
    backends = Backends.from_config(
        env={"OPENAI_BASE_URL": sim_server.base_url, "FLASHEVOLVE_MODEL": "sim-rulebook-1"},
        roles={"reflection": {"name": "reflector", "params": {"temperature": 0.0}}},
    )
    assert backends.task is backends.repair and backends.task is not backends.reflection
    assert backends.reflection.name == "reflector" and len(backends.distinct()) == 2
    await backends.task.chat([{"role": "user", "content": "hi"}])
    await backends.reflection.chat([{"role": "user", "content": "hi"}])
    assert sim_server.recorded[-1].body["temperature"] == 0.0
    stats = backends.stats()
    assert stats["task"].calls == stats["repair"].calls == 1 and stats["reflection"].calls == 1
    assert backends.llm_for("repair") is backends.repair
    with pytest.raises(KeyError, match="roles are"):
        backends.llm_for("critic")
    await backends.aclose()


def test_keyword_arguments_change_a_given_config() -> None:
    base = OpenAIConfig(model="m", base_url="http://127.0.0.1:1/v1")
    llm = OpenAIBackend(base, max_concurrency=2, name="small")
    assert llm.config.max_concurrency == 2 and llm.name == "small"
    assert llm.config.model == "m" and base.max_concurrency == 64


@pytest.mark.asyncio
async def test_model_strings_name_a_backend(sim_server: SimHTTPServer) -> None:
    from flashevolve_nb.llm.openai_backend import from_model_string

    llm = from_model_string(f"openai/sim-rulebook-1@{sim_server.base_url}", env={})
    assert llm.config.model == "sim-rulebook-1" and llm.config.api_key is None
    assert (await llm.chat([{"role": "user", "content": "hi"}])).text
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-env"}
    other = from_model_string("hosted_vllm/Qwen/Qwen3-8B", env=env, max_concurrency=4)
    assert other.config.model == "Qwen/Qwen3-8B"
    assert other.config.endpoints == ("http://127.0.0.1:9/v1",)
    assert other.config.api_key == Secret("sk-env") and other.config.max_concurrency == 4
    with pytest.raises(ValueError, match="no model name"):
        from_model_string("openai/")
