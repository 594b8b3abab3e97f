"""A reflection model given any way ``gepa`` users give one, as our async ``LLM``.

``gepa`` takes a callable ``prompt -> str`` (``gepa.lm.LM`` or any function).
Here the reflection model may also be one of our backends (an ``LLM`` object)
or a model string. Everything becomes an ``LLM`` so that reflection calls are
recorded as events like any other model call, and so that the staleness
policies that repair stale proposals can use the same model.

A simulated backend is wrapped so that it can read ``gepa``'s reflection prompt
(see :mod:`flashevolve_nb.compat.simulated`): the simulator only understands
the prompt it was scripted for, and this wrapper says so in its name.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flashevolve_nb.compat.calls import in_thread
from flashevolve_nb.llm.protocol import LLM, Completion, LLMError, Message, Usage

__all__ = ["CallableLLM", "as_llm", "llm_from_string"]


class CallableLLM:
    """A blocking model callable (``prompt -> str``) behind the async ``LLM`` protocol.

    The callable runs in a thread of this object's own pool (at most
    ``concurrency`` calls at once). A conversation that is one user message is
    passed as its text, anything else as the list of messages (``gepa``'s
    ``LanguageModel`` takes both). Sampling parameters are not passed on: a
    callable takes the prompt only. Token counts are estimates (four
    characters a token), latency is wall seconds, and an exception from the
    callable becomes an ``LLMError`` with the original as its cause, which is
    how stages and policies recognise a failed model call.
    """

    simulated = False

    def __init__(
        self, fn: Callable[[Any], str], *, name: str | None = None, concurrency: int = 8
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a model callable must be callable, got {type(fn).__name__}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 (got {concurrency})")
        self.fn = fn
        label = getattr(fn, "model", None) or getattr(fn, "__qualname__", type(fn).__name__)
        self._name = name or f"callable:{label}"
        self._concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return self._name

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def chat(self, messages: Sequence[Message], **params: Any) -> Completion:
        if len(messages) == 1 and messages[0].get("role") == "user":
            prompt: Any = messages[0].get("content", "")
        else:
            prompt = [dict(m) for m in messages]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self._concurrency, thread_name_prefix="flashevolve-lm"
            )
        t0 = time.perf_counter()
        try:
            call = in_thread(lambda: self.fn(prompt), self._name)
            text = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except Exception as exc:
            raise LLMError(f"{self._name} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise LLMError(f"{self._name} returned {type(text).__name__}, not the answer text")
        n_prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        return Completion(
            text, Usage(n_prompt, len(text) // 4), time.perf_counter() - t0, "stop", self._name
        )

    def __repr__(self) -> str:
        return f"CallableLLM({self._name!r})"


def llm_from_string(model: str, *, seed: int = 0) -> LLM:
    """A backend from a model string.

    ``sim`` or ``sim:<profile>`` (``vllm``, ``api``) is the offline simulator on
    the real clock. Any other string goes to the OpenAI-compatible backend
    (``flashevolve_nb.llm.openai_backend.from_model_string``): LiteLLM-style
    ``openai/MODEL``, optionally ``@BASE_URL`` (a vLLM server, say).
    """
    kind, _, rest = model.partition(":")
    if kind == "sim":
        from flashevolve_nb.sim import Simulator

        return Simulator(profile=rest or "vllm", seed=seed).llm("reflection")
    try:
        backend: Any = importlib.import_module("flashevolve_nb.llm.openai_backend")
    except ImportError:
        backend = None
    factory = getattr(backend, "from_model_string", None)
    if factory is None:
        raise ValueError(
            f"no backend for the model string {model!r}: use 'sim' or 'sim:<profile>' for the "
            "simulator, or pass a backend object or a callable prompt -> str"
        )
    llm: LLM = factory(model)
    return llm


def as_llm(model: object, *, seed: int = 0, concurrency: int = 8) -> LLM:
    """``model`` as an ``LLM``: a backend as it is, a string via :func:`llm_from_string`,
    a callable wrapped in :class:`CallableLLM`. Simulated backends learn ``gepa``'s prompt."""
    if isinstance(model, str):
        llm = llm_from_string(model, seed=seed)
    elif isinstance(model, LLM):
        llm = model
    elif callable(model):
        return CallableLLM(model, concurrency=concurrency)
    else:
        raise TypeError(
            "a reflection model is a callable prompt -> str, a model string or an LLM "
            f"backend; got {type(model).__name__}"
        )
    from flashevolve_nb.compat.simulated import GepaPromptReader

    if llm.simulated and not isinstance(llm, GepaPromptReader):
        return GepaPromptReader(llm)
    return llm
