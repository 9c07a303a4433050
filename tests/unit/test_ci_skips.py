"""Under CI=true a skipped test fails the run (`pytest_sessionfinish` in tests/conftest.py), also
when `make test` runs the suite in pytest-xdist workers: the skips happen in the workers, and
the controller, which sets the exit code, must still see them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

INNER = """\
import pytest


def test_runs() -> None:
    assert True


def test_skips() -> None:
    pytest.skip("no browser")


@pytest.fixture(scope="module")
def browser() -> None:
    pytest.skip("no browser in a module fixture")


def test_needs_a_browser(browser: None) -> None:
    assert True
"""


# The inner runs' tests need none of the installed plugins but xdist's: hypothesis's and
# schemathesis's cost each of the three interpreters of a run a second of CPU importing them.
NO_PLUGINS = [
    f"-pno:{name}" for name in ("cacheprovider", "hypothesispytest", "schemathesis", "anyio")
]


def _inner_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_sessionfinish  # noqa: F401\n"
    )
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *NO_PLUGINS, "-n", "2", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_skip_in_a_worker_fails_the_run_under_ci(tmp_path: Path) -> None:
    done = _inner_run(tmp_path, "--dist", "loadgroup")
    assert done.returncode == 1, done.stdout + done.stderr
    # the first line follows the progress dots on their line
    named = sorted(re.findall(r"skipped under CI=true: (\S+)", done.stdout))
    assert named == ["test_inner.py::test_needs_a_browser", "test_inner.py::test_skips"], (
        done.stdout
    )
    assert "1 passed, 2 skipped" in done.stdout, done.stdout


def test_a_run_without_skips_passes_under_ci(tmp_path: Path) -> None:
    done = _inner_run(tmp_path, "--dist", "loadgroup", "-k", "test_runs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped under CI=true" not in done.stdout
    assert "1 passed in" in done.stdout, done.stdout
