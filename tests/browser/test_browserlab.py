"""The browser fixtures' own rules, without a browser: missing tools fail under CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from browserlab import _missing, artifacts_dir


def test_a_missing_browser_fails_under_ci_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        _missing("chromium")


def test_a_missing_browser_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"playwright"):
        _missing("The Python package playwright")


def test_artifacts_go_where_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLASHEVOLVE_TEST_ARTIFACTS", str(tmp_path / "shots"))
    d = artifacts_dir()
    assert d == tmp_path / "shots" and d.is_dir()
