"""The demo's "Try next" lines name the tfy-audit the user ran, wherever it is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tfy_audit._cli.commands import demo


def _script(folder: Path) -> Path:
    script = folder / "tfy-audit"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    script.chmod(0o755)
    return script


def test_the_clones_venv_script_is_named_relative_to_the_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(tmp_path / ".venv" / "bin")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/tfy-audit", "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert script.exists()
    assert demo._this_command() == ".venv/bin/tfy-audit"


def test_an_installed_tool_on_path_is_named_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(tmp_path / "tools" / "bin")
    monkeypatch.chdir(tmp_path / "tools")
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", str(script.parent))
    assert demo._this_command() == "tfy-audit"


def test_a_script_elsewhere_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(tmp_path / "some where" / "bin")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert demo._this_command() == f"'{script}'"  # quoted: the path holds a space
