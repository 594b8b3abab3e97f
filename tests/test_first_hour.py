"""Issue 19, beyond the CLI: one exception root, temporary files cleaned up, the docs the
project refers to shipped, packaging metadata, deterministic held-out scores."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

import pytest

import flashevolve_nb
from flashevolve_nb.errors import FlashEvolveError

ROOT = Path(__file__).resolve().parents[1]


def _package_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    skip = ("flashevolve_nb.ui",)  # Jupyter-only, and rebuilt elsewhere
    for info in pkgutil.walk_packages(flashevolve_nb.__path__, "flashevolve_nb."):
        if info.name.startswith(skip) or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)  # warnings are not errors
                and obj.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = obj
    return list(found.values())


def test_every_public_exception_derives_from_one_root() -> None:
    excs = _package_exceptions()
    assert len(excs) >= 15
    # MalformedResponse never leaves the backend (it becomes a BackendError).
    strays = [e for e in excs if not issubclass(e, FlashEvolveError)]
    assert {e.__name__ for e in strays} <= {"MalformedResponse"}, strays
    # each keeps the built-in base callers already catch
    from flashevolve_nb.llm.protocol import LLMError
    from flashevolve_nb.store.errors import RunDirError

    assert issubclass(RunDirError, ValueError) and issubclass(LLMError, RuntimeError)
    assert flashevolve_nb.FlashEvolveError is FlashEvolveError
    # the tree in the root's docstring names every subclass
    doc = sys.modules["flashevolve_nb.errors"].__doc__ or ""
    for e in excs:
        if issubclass(e, FlashEvolveError) and e is not FlashEvolveError:
            assert e.__name__ in doc, f"{e.__name__} is missing from the tree"


def test_the_two_port_in_use_errors_have_distinct_names() -> None:
    from flashevolve_nb.llm import vllm_launcher
    from flashevolve_nb.sim import http_server

    assert vllm_launcher.VllmPortInUse is not http_server.SimPortInUse
    assert vllm_launcher.VllmPortInUse.__name__ != http_server.SimPortInUse.__name__
    assert issubclass(vllm_launcher.VllmPortInUse, vllm_launcher.VllmError)
    assert issubclass(http_server.SimPortInUse, OSError)
    # the earlier name still imports
    assert vllm_launcher.PortInUse is vllm_launcher.VllmPortInUse
    assert http_server.PortInUse is http_server.SimPortInUse


def _own_log_dirs() -> set[Path]:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("flashevolve-vllm-*"))


CRASHES = """#!/bin/sh
echo "RuntimeError: Engine core initialization failed."
exit 3
"""


def test_the_launcher_removes_its_temporary_log_folder(tmp_path: Path) -> None:
    from flashevolve_nb.llm.vllm_launcher import VllmServer, VllmStartFailed

    fake = tmp_path / "fake-python"
    fake.write_text(CRASHES)
    fake.chmod(0o755)
    before = _own_log_dirs()
    server = VllmServer(str(tmp_path), python=str(fake), startup_timeout=30)
    with pytest.raises(VllmStartFailed, match="Engine core initialization failed"):
        server.start()
    assert _own_log_dirs() - before == set()
    assert "Engine core initialization failed" in server.log_tail()  # kept in memory
    # an interpreter that cannot even be started leaves nothing either
    with pytest.raises(FileNotFoundError):
        VllmServer(str(tmp_path), python=str(tmp_path / "missing-python")).start()
    assert _own_log_dirs() - before == set()


def test_pyproject_license_and_dependencies() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    project = tomllib.loads(text)["project"]
    assert project["license"] == "Apache-2.0"  # SPDX string, not the deprecated table
    deps = project["dependencies"]
    extras = project["optional-dependencies"]
    assert not any(d.startswith("looptime") for d in deps)
    assert any(d.startswith("looptime") for d in extras["virtual"])
    assert any(d.startswith("looptime") for d in extras["test"])
    # anywidget says why it is there
    line = text.index('"anywidget')
    assert "FigureWidget" in text[text.rindex("dependencies = [", 0, line) : line]


def test_gitignore_covers_the_bench_output() -> None:
    assert "bench-out/" in (ROOT / ".gitignore").read_text().splitlines()


def test_docs_the_project_refers_to_are_shipped() -> None:
    for name in ("SIMULATOR.md", "PAPER.md", "BENCHMARK.md", "notes/vllm-cpu.md",
                 "notes/jupyter-async.md"):  # fmt: skip
        assert (ROOT / "docs" / name).is_file(), name
    # every relative markdown link in README, BENCHMARKS.md and docs/ resolves
    for md in [ROOT / "README.md", ROOT / "BENCHMARKS.md", *ROOT.glob("docs/**/*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", md.read_text()):
            if "://" in target:
                continue
            assert (md.parent / target).exists(), f"{md.name}: broken link {target}"
    readme = (ROOT / "README.md").read_text()
    assert "docs/SIMULATOR.md" in readme
    assert "shared/" not in readme and "shared/" not in (ROOT / "BENCHMARKS.md").read_text()
    assert "docs/notes/vllm-cpu.md" in (ROOT / "examples" / "vllm_server.py").read_text()


def test_held_out_evaluation_is_deterministic_per_prompt() -> None:
    from flashevolve_nb.demo import DemoConfig, build_demo

    async def main() -> tuple[list[float], list[float]]:
        demo = build_demo(DemoConfig(minutes=1, n_val=5, n_test=20, time_scale=10_000))
        seed = demo.task.seed_candidate()
        other = {k: v + "\nEnd every answer with the word DONE." for k, v in seed.items()}
        first = await demo.test_scores([seed, seed, other])
        again = await demo.test_scores([other, seed])
        return first, again

    first, again = asyncio.run(main())
    assert first[0] == first[1] == again[1]
    assert first[2] == again[0]
