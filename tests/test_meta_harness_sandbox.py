"""The Meta-Harness sandbox: an untrusted harness fails alone, whatever it tries.

Every test spawns real processes (about 0.1 s each; the hang waits out a 1 s limit).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flashevolve_nb.workloads.meta_harness.sandbox import (
    Sandbox,
    SandboxLimits,
    network_namespace_works,
)

TRAIN = [{"id": "t0", "input": "my refund", "output": "billing"}]
TASKS = [{"id": "v0", "input": "a parcel"}, {"id": "v1", "input": "a login"}]
GOOD = """
def update_memory(memory, example):
    return (memory or []) + [example]

def build_context(task, memory):
    return [{"role": "system", "content": f"{len(memory)} example(s)"},
            {"role": "user", "content": task["input"]}]
"""
ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parent.parent


def harness(body: str) -> str:
    """A harness whose build_context runs ``body`` first."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"""
import os
def update_memory(memory, example):
    return memory

def build_context(task, memory):
{indented}
    return [{{"role": "user", "content": task["input"]}}]
"""


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(time_limit=1.0, memory_mb=256))


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on this machine's loopback that accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_good_harness_builds_every_context_in_its_own_process(sandbox: Sandbox) -> None:
    result = sandbox.run(GOOD + "\nSAMPLES = 3\nprint('chatter')\n", TRAIN, TASKS)
    assert result.ok, result.failure
    assert result.samples == 3
    assert [list(c) for c in result.contexts] == [
        [{"role": "system", "content": "1 example(s)"}, {"role": "user", "content": "a parcel"}],
        [{"role": "system", "content": "1 example(s)"}, {"role": "user", "content": "a login"}],
    ]
    assert "chatter" in result.stderr  # its prints cannot corrupt the answer
    iso = sandbox.isolation
    assert iso.guard
    if ROOT:
        assert iso.user == "nobody"
    if network_namespace_works():
        assert "unshare --net" in iso.network


@pytest.mark.asyncio
async def test_a_hang_a_crash_and_a_memory_blow_up_fail_alone(sandbox: Sandbox) -> None:
    hang = harness("while True:\n    pass")
    crash = "import os\nos._exit(3)\n"
    raises = harness("return 1 / 0")
    memory = harness("block = bytearray(4 * 1024**3)")
    results = await asyncio.gather(
        *(sandbox.arun(code, TRAIN, TASKS) for code in (hang, GOOD, crash, raises, memory))
    )
    hung, good, crashed, raised, blown = results
    assert hung.failure.startswith("timeout: still running after 1 s")
    assert hung.seconds < 1.8
    assert good.ok and len(good.contexts) == 2
    assert crashed.failure == "crash: exit code 3 with no answer"
    assert raised.failure == "build_context: ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in raised.details["traceback"]
    assert blown.failure == "memory: exceeded 256 MiB in build_context (MemoryError)"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (harness("return 'not messages'"), "build_context: TypeError: build_context must return"),
        ("def build_context(task, memory):\n    return []\n", "interface: TypeError: the harness"),
        (GOOD + "\nSAMPLES = 9\n", "interface: ValueError: SAMPLES must be within 1..5"),
        ("import numpy_that_is_not_here\n", "import: ModuleNotFoundError"),
        (
            "def build_context(task, memory)\n    pass\n",
            "syntax: SyntaxError: expected ':' (harness.py, line 1)",
        ),
    ],
)
def test_a_harness_breaking_the_interface_fails_with_the_stage(
    sandbox: Sandbox, code: str, reason: str
) -> None:
    result = sandbox.run(code, TRAIN, TASKS)
    assert not result.ok and result.failure.startswith(reason)


def test_network_files_and_processes_are_refused(sandbox: Sandbox, listener: int) -> None:
    outside = REPO / "escape-by-harness.txt"
    for body, refused in [
        (f"import socket\nsocket.socket().connect(('127.0.0.1', {listener}))",
         "PermissionError: sandbox: socket.__new__ is not allowed"),
        (f"import socket\nsocket.create_connection(('localhost', {listener}), timeout=0.5)",
         "PermissionError: sandbox: socket.getaddrinfo is not allowed"),
        ("open('../escape.txt', 'w').write('x')",
         "PermissionError: sandbox: writing '../escape.txt' outside the working directory"),
        (f"open({str(outside)!r}, 'a')", "outside the working directory"),
        ("os.mkdir(os.path.expanduser('~/../../made-by-harness'))", "os.mkdir on"),
        ("os.system('true')", "PermissionError: sandbox: os.system is not allowed"),
        ("os.fork()", "PermissionError: sandbox: os.fork is not allowed"),
    ]:  # fmt: skip
        result = sandbox.run(harness(body), TRAIN, TASKS)
        assert not result.ok and result.failure.startswith("build_context: "), body
        assert refused in result.failure, (body, result.failure)
    assert not outside.exists()
    # Inside its own directory (and its HOME and TMPDIR, which are inside) it may write.
    inside = harness(
        "open('notes.txt', 'w').write('x')\n"
        "open(os.path.join(os.environ['TMPDIR'], 't'), 'w').write('x')\n"
        "assert os.environ['HOME'] == os.getcwd()"
    )
    result = sandbox.run(inside, TRAIN, TASKS)
    assert result.ok, result.failure


@pytest.mark.skipif(not network_namespace_works(), reason="unshare --net does not work here")
def test_without_the_audit_hook_the_os_still_refuses(listener: int) -> None:
    """The layers under the audit hook: the network namespace and, as root, ``nobody``."""
    bare = Sandbox(SandboxLimits(time_limit=1.0, guard=False))
    assert bare.isolation.describe().endswith("no audit hook")
    connect = harness(
        f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=0.5)"
    )
    result = bare.run(connect, TRAIN, TASKS)
    assert not result.ok and "Network is unreachable" in result.failure
    if ROOT:
        result = bare.run(harness("open('../escape.txt', 'w')"), TRAIN, TASKS)
        assert not result.ok and "Permission denied" in result.failure


def test_work_folders_of_killed_runs_are_swept_and_no_run_leaves_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys
    import tempfile

    # World-traversable, as the sandbox needs when it drops to an unprivileged user.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for p in (scratch, *scratch.parents):
        if p in (Path("/"), Path("/tmp")):  # already traversable: leave them be
            break
        if p.stat().st_uid == os.geteuid():
            p.chmod(p.stat().st_mode | 0o011)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = scratch / f"flashevolve-harness-{gone.stdout.strip()}-abc"
    alive = scratch / f"flashevolve-harness-{os.getpid()}-def"
    for folder in (dead, alive):
        (folder / "work").mkdir(parents=True)
    result = Sandbox(SandboxLimits(time_limit=2.0, memory_mb=256)).run(GOOD, TRAIN, TASKS)
    assert result.ok, result.failure
    assert not dead.exists(), "a killed run's work folder outlived it"
    assert alive.exists(), "a live process's folder was taken"
    assert sorted(p.name for p in scratch.iterdir()) == [alive.name]  # the run cleaned up
