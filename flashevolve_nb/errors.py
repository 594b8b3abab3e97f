"""The root of every exception this package raises on purpose.

``except FlashEvolveError`` catches all of them; each also keeps the built-in
base it always had (``ValueError``, ``RuntimeError``, ``OSError``...), so code
that caught those still does. The tree (module in brackets)::

    FlashEvolveError
     ├── RunFailed (RuntimeError)            the run could not go on      [engine.pipeline]
     ├── LLMError (RuntimeError)             a backend gave no answer     [llm.protocol]
     │    ├── BackendError                   OpenAI-compatible backend    [llm.openai_backend]
     │    ├── CircuitOpen                    its breaker is open          [llm.breaker]
     │    └── RateLimited                    simulated 429                [sim.errors]
     ├── VllmError (RuntimeError)            the managed vLLM server      [llm.vllm_launcher]
     │    ├── VllmNotInstalled
     │    ├── ModelNotFound
     │    ├── VllmPortInUse                  its port is taken
     │    └── VllmStartFailed
     ├── SimPortInUse (OSError)              sim-server's port is taken   [sim.http_server]
     ├── RunDirError (ValueError)            a run directory refused      [store.errors]
     │    ├── ForeignRunDir, CorruptRunDir, RunExists,
     │    └── NothingToResume, RunDirInUse, IncompatibleRun
     ├── RunStoreError (RuntimeError)        writing the run store failed [store.errors]
     ├── AdapterContractError (ValueError)   a gepa adapter broke its contract [compat.calls]
     ├── PlaybookFormatError (ValueError)    an ACE playbook does not parse [workloads.ace]
     ├── SandboxError (RuntimeError)         no sandbox for harness code  [workloads.meta_harness]
     ├── CancelledInThread (RuntimeError)    user code cancelled itself   [compat.calls]
     ├── RunEnded (RuntimeError)             a control on an ended run    [runtime.run]
     ├── LoopUnresponsive (TimeoutError)     the run's loop is blocked    [runtime.loop]
     └── TurboUnavailable (RuntimeError)     turbo-gepa cannot take part  [bench.turbo]

Configuration mistakes found when a config object is built (``DemoConfig``,
``PipelineConfig``...) are plain ``ValueError``/``TypeError``, as for any
Python argument. This module imports nothing, so every other module can use it.
"""

from __future__ import annotations

__all__ = ["FlashEvolveError"]


class FlashEvolveError(Exception):
    """The base of every exception flashevolve_nb raises on purpose (tree above)."""
