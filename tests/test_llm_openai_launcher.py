"""The vLLM launcher's process handling and errors, with real processes standing in for vLLM.

A stand-in is an executable given as ``python=``: the launcher runs it with
vLLM's arguments. One serves the loopback simulator on the port it is given
(and leaves a child behind, as vLLM's engine process is); others crash or
never become healthy. The real engine is in test_vllm_real.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flashevolve_nb.llm.vllm_launcher import (
    ModelNotFound,
    PortInUse,
    VllmNotInstalled,
    VllmServer,
    VllmStartFailed,
)

SERVES = """\
#!/bin/sh
# Stands in for: python -m vllm.entrypoints.openai.api_server --model M --port P ...
while [ $# -gt 0 ]; do
  case "$1" in --port) PORT=$2; shift;; esac
  shift
done
echo "child pid: starting"
sleep 300 &
exec {python} -m flashevolve_nb sim-server --port "$PORT" --time-scale 1000
"""
CRASHES = """\
#!/bin/sh
echo "INFO loading the model"
echo "RuntimeError: Engine core initialization failed. See root cause above."
exit 3
"""
HANGS = """\
#!/bin/sh
echo "INFO compiling forever"
exec sleep 300
"""


def stand_in(tmp_path: Path, script: str) -> str:
    path = tmp_path / "fake-python"
    path.write_text(script.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def group_gone(pgid: int, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_starts_waits_for_health_hands_back_a_backend_and_stops_the_group(
    tmp_path: Path,
) -> None:
    server = VllmServer(
        str(tmp_path), python=stand_in(tmp_path, SERVES), startup_timeout=60,
        served_model_name="sim-rulebook-1", max_model_len=1024, enforce_eager=True,
        load_format="dummy", api_key="sk-launcher-key",
    )  # fmt: skip
    cmd = server.command()
    assert "--enforce-eager" in cmd and cmd[cmd.index("--load-format") + 1] == "dummy"
    assert "sk-launcher-key" not in " ".join(cmd)
    with server:
        assert server.running and server.port is not None
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        pgid = server.pid
        assert pgid is not None
        llm = server.backend()
        assert llm.config.api_key is not None and llm.config.model == "sim-rulebook-1"
        reply = asyncio.run(llm.chat([{"role": "user", "content": "hello"}], max_tokens=20))
        assert reply.text and reply.usage.completion_tokens <= 20
    assert not server.running
    assert group_gone(pgid), "the server's child process outlived close()"
    assert "child pid: starting" in server.log_tail()


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    server = VllmServer(str(tmp_path), python=stand_in(tmp_path, CRASHES), startup_timeout=60)
    with pytest.raises(VllmStartFailed, match="exited with code 3") as err:
        server.start()
    assert "Engine core initialization failed" in str(err.value)
    assert "Engine core initialization failed" in err.value.log_tail
    assert not server.running


def test_a_server_that_is_never_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    server = VllmServer(str(tmp_path), python=stand_in(tmp_path, HANGS), startup_timeout=1.0)
    with pytest.raises(VllmStartFailed, match=r"not healthy after 1s") as err:
        server.start()
    assert "compiling forever" in err.value.log_tail
    assert not server.running


def test_a_busy_port_a_missing_model_and_no_vllm_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = VllmServer(str(tmp_path), port=port, python=stand_in(tmp_path, SERVES))
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            busy.start()
    with pytest.raises(ModelNotFound, match="does not exist"):
        VllmServer(tmp_path / "no-such-model", python="/bin/true").start()
    # A None entry in sys.modules is how Python says "this package is absent".
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(VllmNotInstalled, match="pip install vllm"):
        VllmServer(str(tmp_path)).start()


def test_a_server_left_running_is_stopped_at_interpreter_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from flashevolve_nb.llm.vllm_launcher import VllmServer
        s = VllmServer({str(tmp_path)!r}, python={stand_in(tmp_path, SERVES)!r})
        s.start()
        print(s.pid, flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    pgid = int(out.stdout.strip())
    assert group_gone(pgid)
