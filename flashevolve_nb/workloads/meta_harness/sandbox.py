"""Running one untrusted harness in a separate, confined process.

A candidate harness is code a model wrote; it may loop forever, crash, eat
memory, open sockets or write anywhere. :class:`Sandbox` runs it in its own
process (``python -I -S``: no environment variables, user site or ``.pth``
files; on the trusted bootstrap :mod:`.runner`) and answers a
:class:`SandboxResult`: the contexts it built, or why it failed. Whatever the
harness does, only that candidate fails; the run goes on.

The harness only *builds contexts* (a pure function of task and memory to
messages): the parent process makes the model calls. The sandbox therefore
never needs the network, and gets none.

What is enforced (``Sandbox.isolation`` says which layers applied):

- **Time**: a wall-clock limit (the process group is killed at the limit), and
  ``RLIMIT_CPU`` as a backstop.
- **Memory**: ``RLIMIT_AS`` set in the child before exec; an allocation past it
  fails with ``MemoryError`` or kills the process.
- **Output**: stdout and stderr are files capped by ``RLIMIT_FSIZE``; no core
  files.
- **Network**: a fresh network namespace whose only interface is a downed
  loopback (``unshare --net``) when the ``unshare`` tool works here (it needs
  root or user namespaces); otherwise, and in addition unless ``guard`` is
  off, the bootstrap's audit hook refuses creating any socket and resolving
  any name.
- **Files and processes**: a fresh temporary working directory with ``HOME``
  and ``TMPDIR`` inside it. When the parent is root the bootstrap drops to
  ``nobody`` (no groups, ``RLIMIT_NPROC`` 0) before importing the harness, so
  the OS refuses writes to anything ``nobody`` may not write (the project,
  the sandbox's own parent directory). The audit hook, installed before the
  harness is imported and impossible to remove from Python, refuses opening
  a file for writing, removing, renaming or creating one outside the working
  directory, starting processes and loading ``ctypes``.

As ``nobody`` the harness may be unable to read the interpreter's library
(under ``/root``): it can import the modules the bootstrap preloads, no
others.

Not enforced: reading files the user may read; writing world-writable
places (``/tmp``, ``/dev/shm``) by native code that bypasses the audit hook
(reachable only without ``ctypes``, i.e. through an interpreter bug); CPU
share (concurrent sandboxes are capped by ``max_parallel`` instead). Without
root the harness runs as the parent's user: only the audit hook stands
between it and the parent's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flashevolve_nb.errors import FlashEvolveError
from flashevolve_nb.llm.protocol import Message

__all__ = [
    "Isolation", "Sandbox", "SandboxError", "SandboxLimits", "SandboxResult",
    "network_namespace_works",
]  # fmt: skip


class SandboxError(FlashEvolveError, RuntimeError):
    """The sandbox itself cannot run here (not a harness's fault: that is a failed result)."""


RUNNER = Path(__file__).with_name("runner.py")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    time_limit: float = 10.0
    """Wall-clock seconds one harness run may take (import, memory, every context)."""
    memory_mb: int = 512
    """Address space of the process (``RLIMIT_AS``), in MiB."""
    output_mb: int = 32
    """Largest stdout or stderr file (``RLIMIT_FSIZE``), in MiB."""
    network_namespace: bool | None = None
    """Run under ``unshare --net``; None: when it works here."""
    drop_to: str | None = "nobody"
    """The user to run the harness as when the parent is root (None: do not drop)."""
    guard: bool = True
    """Install the bootstrap's audit hook (sockets, processes, ctypes, outside writes)."""

    def __post_init__(self) -> None:
        if not (self.time_limit > 0 and math.isfinite(self.time_limit)):
            raise ValueError(f"time_limit must be a finite number > 0 (got {self.time_limit})")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64 (got {self.memory_mb})")
        if self.output_mb < 1:
            raise ValueError(f"output_mb must be >= 1 (got {self.output_mb})")


@dataclass(frozen=True, slots=True)
class Isolation:
    """Which layers confine a harness, in words, for the record."""

    network: str
    user: str
    guard: bool

    def describe(self) -> str:
        guard = "audit hook on" if self.guard else "no audit hook"
        return f"network: {self.network}; user: {self.user}; {guard}"


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """One harness run: the contexts it built, or the reason it failed."""

    ok: bool
    contexts: tuple[tuple[Message, ...], ...] = ()
    """Messages per task, in the order the tasks were given."""
    samples: int = 1
    """Answers the harness asks per task (self-consistency; the majority counts)."""
    failure: str = ""
    """Why it failed: ``"timeout: ..."``, ``"import: SyntaxError: ..."``..."""
    stderr: str = ""
    """The end of what the harness printed."""
    seconds: float = 0.0
    """Real seconds the process took."""
    details: Mapping[str, Any] = field(default_factory=dict)


@functools.cache
def network_namespace_works() -> bool:
    """True when ``unshare --net`` can run a command here (root or user namespaces)."""
    tool = shutil.which("unshare")
    if tool is None:
        return False
    try:
        done = subprocess.run([tool, "--net", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _limits_in_child(memory: int, output: int, cpu: int) -> Callable[[], None]:
    setrlimit = resource.setrlimit  # bound now: the child must not import or lock

    def apply() -> None:
        setrlimit(resource.RLIMIT_AS, (memory, memory))
        setrlimit(resource.RLIMIT_FSIZE, (output, output))
        setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class Sandbox:
    """Runs harnesses one process each, ``max_parallel`` at a time.

    ``inline``: :meth:`arun` runs the process on the event loop's thread,
    blocking it, instead of in a worker thread. A simulated run on a virtual
    clock wants this: the clock stands still while the harness runs, so the
    run is the same whatever the machine's speed; a run on a real clock wants
    the loop free. None (the default): inline exactly when the running loop's
    clock is virtual (``looptime`` with its time compaction on).
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        max_parallel: int = 2,
        inline: bool | None = None,
        python: str = sys.executable,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be >= 1 (got {max_parallel})")
        self.limits = limits or SandboxLimits()
        self.inline = inline
        self.python = python
        self._slots = asyncio.Semaphore(max_parallel)
        self._swept = False
        self._netns = (
            network_namespace_works()
            if self.limits.network_namespace is None
            else self.limits.network_namespace
        )
        self._drop: tuple[int, int] | None = None
        if self.limits.drop_to is not None and os.geteuid() == 0:
            try:
                user = pwd.getpwnam(self.limits.drop_to)
            except KeyError:
                raise ValueError(
                    f"no user {self.limits.drop_to!r} to run harnesses as; name another "
                    "(SandboxLimits.drop_to) or None to keep root's"
                ) from None
            self._drop = (user.pw_uid, user.pw_gid)

    @property
    def isolation(self) -> Isolation:
        if self._netns:
            network = "namespace without interfaces (unshare --net)"
        elif self.limits.guard:
            network = "sockets refused by the audit hook only"
        else:
            network = "not confined"
        user = self.limits.drop_to if self._drop else "the parent's user"
        return Isolation(network, str(user), self.limits.guard)

    async def arun(
        self,
        code: str,
        train: Sequence[Mapping[str, Any]],
        tasks: Sequence[Mapping[str, Any]],
    ) -> SandboxResult:
        """:meth:`run`, without holding up the event loop unless ``inline``."""
        async with self._slots:
            if self.inline if self.inline is not None else _virtual_clock():
                return self.run(code, train, tasks)
            return await asyncio.to_thread(self.run, code, train, tasks)

    def _scratch(self) -> str | None:
        """Where work directories go: the temp dir, unless the user the harness runs as
        cannot reach it (a private ``TMPDIR``, pytest's 0700 temp dirs): then the first
        world-traversable system temp dir."""
        if self._drop is None:
            return None
        for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
            if _traversable_by_all(Path(candidate)):
                return candidate
        raise SandboxError(
            "the harness runs as an unprivileged user, who cannot reach any temp directory "
            f"({tempfile.gettempdir()}, /tmp, /var/tmp, /dev/shm); make one world-traversable "
            "(chmod o+x) or run with SandboxLimits(drop_to=None)"
        )

    def run(
        self,
        code: str,
        train: Sequence[Mapping[str, Any]],
        tasks: Sequence[Mapping[str, Any]],
    ) -> SandboxResult:
        """Import ``code`` as ``harness.py``, feed it the training examples
        (``update_memory``) and ask it for the context of every task (blocking)."""
        lim = self.limits
        scratch = self._scratch()
        if not self._swept:
            self._swept = True
            _sweep(Path(scratch or tempfile.gettempdir()))
        # The owner's pid in the name: a process killed mid-run leaves its folder behind,
        # and the next sandbox removes it once that process is gone.
        base = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=scratch))
        try:
            # The base is the sandbox's: traversable, not listable or writable by the harness.
            base.chmod(0o711)
            work = base / "work"
            (work / "tmp").mkdir(parents=True)
            (work / "harness.py").write_text(code, encoding="utf-8")
            if self._drop is not None:
                for p in (work, work / "tmp", work / "harness.py"):
                    os.chown(p, *self._drop)
            (base / "in.json").write_text(
                json.dumps({"train": list(train), "tasks": list(tasks)}), encoding="utf-8"
            )
            argv = [self.python, "-I", "-S", str(RUNNER)]
            if self._drop is not None:
                argv += ["--drop", f"{self._drop[0]}:{self._drop[1]}"]
            if lim.guard:
                argv.append("--guard")
            if self._netns:
                argv = [shutil.which("unshare") or "unshare", "--net", "--", *argv]
            env = {"HOME": str(work), "TMPDIR": str(work / "tmp"), "PATH": "/usr/bin:/bin",
                   "LANG": "C.UTF-8"}  # fmt: skip
            return self._spawn(argv, env, base, work)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def _spawn(self, argv: list[str], env: dict[str, str], base: Path, work: Path) -> SandboxResult:
        lim = self.limits
        preexec = _limits_in_child(
            lim.memory_mb * 2**20, lim.output_mb * 2**20, math.ceil(lim.time_limit) + 1
        )
        started = time.monotonic()
        with (
            open(base / "in.json", "rb") as stdin,
            open(base / "out.json", "wb") as stdout,
            open(base / "err.txt", "wb") as stderr,
        ):
            proc = subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=work, env=env,
                preexec_fn=preexec, start_new_session=True, close_fds=True,
            )  # fmt: skip
            try:
                timed_out = not _exits_within(proc, lim.time_limit)
            finally:
                # The whole session: a harness that forked anyway leaves nothing behind.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        seconds = time.monotonic() - started
        err = _tail(base / "err.txt")
        if timed_out:
            return SandboxResult(False, failure=f"timeout: still running after "
                                 f"{lim.time_limit:g} s (wall clock)", stderr=err,
                                 seconds=seconds)  # fmt: skip
        return _read_answer(base / "out.json", proc.returncode, err, seconds, lim)


def _virtual_clock() -> bool:
    """True on a loop whose clock jumps ahead when every task waits (``looptime``)."""
    return bool(getattr(asyncio.get_running_loop(), "looptime_on", False))


def _exits_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait for ``proc`` to end, at most ``seconds``; True when it did."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here: Popen's polling wait
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        # Readable the moment the process exits (Popen.wait polls with sleeps instead).
        ready, _, _ = select.select([pidfd], [], [], seconds)
    finally:
        os.close(pidfd)
    return bool(ready)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _killed(code: int, lim: SandboxLimits) -> str:
    sig = -code
    name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
    why = {
        "SIGXCPU": f"CPU time limit ({math.ceil(lim.time_limit) + 1} s) exceeded",
        "SIGXFSZ": f"output limit ({lim.output_mb} MiB) exceeded",
        "SIGSEGV": f"crashed (perhaps out of its {lim.memory_mb} MiB of memory)",
        "SIGKILL": "killed",
    }.get(name, "killed")
    return f"crash: {why} ({name})"


def _read_answer(
    path: Path, returncode: int, err: str, seconds: float, lim: SandboxLimits
) -> SandboxResult:
    def failed(reason: str, **details: Any) -> SandboxResult:
        return SandboxResult(False, failure=reason, stderr=err, seconds=seconds, details=details)

    if returncode < 0:
        return failed(_killed(returncode, lim))
    size = path.stat().st_size if path.exists() else 0
    if size >= lim.output_mb * 2**20:
        return failed(f"output: larger than {lim.output_mb} MiB")
    try:
        answer = json.loads(path.read_text(encoding="utf-8") or "null")
    except (ValueError, UnicodeDecodeError) as exc:
        return failed(f"output: not the runner's JSON answer ({exc}); exit code {returncode}")
    if not isinstance(answer, dict):
        if "MemoryError" in err:
            return failed(f"memory: exceeded {lim.memory_mb} MiB (MemoryError)")
        return failed(f"crash: exit code {returncode} with no answer")
    if not answer.get("ok"):
        stage, error = str(answer.get("stage", "?")), str(answer.get("error", "?"))
        if error.startswith("MemoryError"):
            return failed(f"memory: exceeded {lim.memory_mb} MiB in {stage} (MemoryError)")
        return failed(f"{stage}: {error}", traceback=str(answer.get("traceback", ""))[-2000:])
    return _contexts(answer, err, seconds) or failed("output: malformed contexts")


def _contexts(answer: Mapping[str, Any], err: str, seconds: float) -> SandboxResult | None:
    """The answer checked again here: the harness may have tampered with the runner."""
    samples, raw = answer.get("samples"), answer.get("contexts")
    if not isinstance(samples, int) or not isinstance(raw, list):
        return None
    contexts = []
    for c in raw:
        msgs = c.get("messages") if isinstance(c, dict) else None
        if not isinstance(msgs, list) or not msgs:
            return None
        checked: list[Message] = []
        for m in msgs:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)):  # fmt: skip
                return None
            checked.append({"role": m["role"], "content": m["content"]})
        contexts.append(tuple(checked))
    return SandboxResult(True, tuple(contexts), samples, stderr=err, seconds=seconds)


def _traversable_by_all(path: Path) -> bool:
    """Whether every directory from the root down to ``path`` lets any user through."""
    try:
        p = path.resolve()
        return p.is_dir() and all(d.stat().st_mode & 0o001 for d in (p, *p.parents))
    except OSError:
        return False


_PREFIX = "flashevolve-harness-"


def _sweep(scratch: Path) -> None:
    """Remove work folders that processes killed mid-run left behind (their pid is gone)."""
    try:
        folders = list(scratch.glob(f"{_PREFIX}*-*"))
    except OSError:
        return
    for folder in folders:
        pid_text = folder.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or not folder.is_dir():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # alive (another user's, say): not ours to judge
