"""Fixtures: a real JupyterLab on 127.0.0.1, headless Debian chromium, Python Playwright.

Nothing of the user's leaks in: JupyterLab's settings, workspaces, config and
runtime files live in a temporary directory, news and update checks are off
(the machine has no network), and the notebook under test is a copy.

Missing chromium or playwright fails the test under CI (env ``CI`` set) with
what to install; elsewhere it is skipped with the same words.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

screenshots: list[Path] = []
"""Every screenshot the browser tests wrote, for the end-of-session summary."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

SERVER_START_TIMEOUT = 90.0
"""Real seconds for JupyterLab to answer; generous for a loaded 2-core machine."""


def _missing(what: str) -> None:
    """Fail under CI (a green run must not hide a missing install), skip elsewhere."""
    message = (
        f"{what} is needed for the browser test. Install it with: "
        "apt-get install -y chromium && python3 -m pip install -e '.[test]' "
        "(never `playwright install`: the test uses Debian's chromium)"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$FLASHEVOLVE_TEST_ARTIFACTS`` or ``test-artifacts/``."""
    d = Path(os.environ.get("FLASHEVOLVE_TEST_ARTIFACTS") or REPO / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if path is None:
        _missing("Debian's chromium (no `chromium` on PATH, no /usr/bin/chromium)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def playwright_sync() -> Any:
    try:
        from playwright import sync_api
    except ModuleNotFoundError:
        _missing("The Python package playwright")
    return sync_api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Lab:
    """A running JupyterLab: its URL, the root it serves, and its log."""

    url: str
    root: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _quiet_settings(settings: Path) -> None:
    # No news popup and no update check: they would fetch from the internet.
    d = settings / "@jupyterlab" / "apputils-extension"
    d.mkdir(parents=True, exist_ok=True)
    (d / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Save widget state with the notebook, as a person who shares notebooks turns on.
    w = settings / "@jupyter-widgets" / "jupyterlab-manager"
    w.mkdir(parents=True, exist_ok=True)
    (w / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {proc.returncode} before answering; "
                f"its log:\n{log.read_text(errors='replace')[-4000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(
        f"JupyterLab did not answer on {url} within {SERVER_START_TIMEOUT:g} s ({last}); "
        f"its log:\n{log.read_text(errors='replace')[-4000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Kernels run in sessions of their own (jupyter_client starts them so):
    # note every descendant first, then end the server's group and them.
    try:
        import psutil

        kids = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        kids = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    for k in kids:
        with contextlib.suppress(Exception):
            k.kill()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    settings = base / "settings"
    _quiet_settings(settings)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        # The kernel is then ipykernel's own for this Python, not a user's kernelspec.
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONUNBUFFERED": "1",
        # The kernel imports the working tree under test, whatever is installed.
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = base / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, url, log)
        yield Lab(url=url, root=root, log=log, proc=proc)
    finally:
        _stop(proc)


@dataclass
class Browser:
    """One chromium page and everything its console said."""

    page: Any
    console: list[str] = field(default_factory=list)

    def console_tail(self, lines: int = 60) -> str:
        return "\n".join(self.console[-lines:]) or "(nothing)"


@pytest.fixture
def browser(
    chromium_path: str, playwright_sync: Any, request: pytest.FixtureRequest
) -> Iterator[Browser]:
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = chromium.new_page(viewport={"width": 1500, "height": 1100})
            b = Browser(page)
            page.on("console", lambda m: b.console.append(f"[{m.type}] {m.text}"))
            page.on("pageerror", lambda e: b.console.append(f"[pageerror] {e}"))
            request.node.fe_browser = b
            yield b
        finally:
            chromium.close()
