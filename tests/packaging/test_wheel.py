"""The wheel as a user installs it: built with `uv build`, installed into a fresh virtualenv on
the newest supported Python with the locked runtime dependencies, then imported and run against
the simulator from a folder that holds a `pipelines/` package of the user's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    API_KEY,
    IN_CI,
    REPO,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
)

# one worker builds the wheel and its virtualenvs once for the module
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

PYTHON = "3.13"


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def _run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(*_uv(), "build", "--wheel", "--out-dir", str(out))
    (wheel,) = out.glob("tfy_audit-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, built_wheel: Path) -> Path:
    """A virtualenv on Python 3.13 holding the wheel and the locked runtime dependencies."""
    found = subprocess.run(
        [str(REPO / "scripts" / "find-python"), PYTHON], capture_output=True, text=True
    )
    if found.returncode != 0:
        if IN_CI:
            pytest.fail(f"no Python {PYTHON}: {found.stderr.strip()}")
        pytest.skip(found.stderr.strip())
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    requirements = root / "requirements.txt"
    requirements.write_text(
        _run(*_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project")
    )
    _run(*_uv(), "venv", "--quiet", "--python", found.stdout.strip(), str(venv))
    _run(
        *_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
        "-r", str(requirements), str(built_wheel),
    )  # fmt: skip
    return venv


def test_the_wheel_holds_one_top_level_package(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as wheel:
        names = {n.split("/", 1)[0] for n in wheel.namelist()}
        top = {n for n in names if not n.endswith(".dist-info")}
        assert top == {"tfy_audit"}, top
        # the views' SQL, the report's queries and templates, and the simulator travel with
        # the package
        listed = set(wheel.namelist())
    assert "tfy_audit/_warehouse/sql/daily_activity.sql" in listed
    assert "tfy_audit/_report/sql/all_time.sql" in listed
    assert "tfy_audit/_report/templates/report.html.j2" in listed
    assert "tfy_audit/_report/templates/report.css" in listed
    assert "tfy_audit/simulator/__init__.py" in listed
    assert "tfy_audit/py.typed" in listed


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A user's project folder with a `pipelines/` package of its own (as Airflow and Dagster
    projects often have), which must not shadow anything of ours."""
    project = tmp_path / "project"
    (project / "pipelines").mkdir(parents=True)
    (project / "pipelines" / "__init__.py").write_text("raise ImportError('the user pipelines')\n")
    return project


def test_the_installed_command_syncs_the_simulator(
    installed: Path, user_project: Path, tmp_path: Path
) -> None:
    python = installed / "bin" / "python"
    out = _run(
        str(python), "-c",
        "import sys, tfy_audit; print(sys.version_info[:2], tfy_audit.__version__, "
        "sorted(tfy_audit.__all__) == sorted(set(tfy_audit.__all__)))",
        cwd=user_project,
    )  # fmt: skip
    assert out.startswith(f"(3, {PYTHON.split('.')[1]})"), out
    assert out.strip().endswith("True"), out
    version = _run(str(installed / "bin" / "tfy-audit"), "--version", cwd=user_project)
    assert version.strip() == f"tfy-audit {_project_version()}"

    sim: Simulator = make_simulator(1_500)
    workspace = Workspace(tmp_path / "audit.duckdb", tmp_path / "pipelines-dir")
    with SimulatorServer(sim) as server:
        _run(
            str(installed / "bin" / "tfy-audit"), *workspace.sync_args(server.url),
            cwd=user_project, env={"TFY_API_KEY": API_KEY, "RUNTIME__DLTHUB_TELEMETRY": "false"},
        )  # fmt: skip
    assert_warehouse_matches(workspace, sim.events())


def _project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


# -- the install paths the README documents: a tool from the clone or the wheel, with extras --


def _python() -> str:
    found = subprocess.run(
        [str(REPO / "scripts" / "find-python"), PYTHON], capture_output=True, text=True
    )
    if found.returncode != 0:
        if IN_CI:
            pytest.fail(f"no Python {PYTHON}: {found.stderr.strip()}")
        pytest.skip(found.stderr.strip())
    return found.stdout.strip()


@pytest.fixture(scope="module")
def locked_with_delta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locked runtime versions with the `delta` extra: the constraints the README's
    commands take, so the test installs what the lock tested."""
    constraints = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    exported = _run(
        *_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
        "--extra", "delta",
    )  # fmt: skip
    constraints.write_text(exported)
    return constraints


def _tool_env(root: Path) -> dict[str, str]:
    """uv's tool dirs of a test of its own, never the user's ~/.local."""
    return {"UV_TOOL_DIR": str(root / "tools"), "UV_TOOL_BIN_DIR": str(root / "bin")}


def _syncs_into_delta(command: Path, tmp_path: Path) -> None:
    """`tfy-audit sync --destination filesystem --table-format delta` on a local folder: the
    `delta` extra is installed and works."""
    sim = make_simulator(400, days=2)
    lake = tmp_path / "lake"
    with SimulatorServer(sim) as server:
        _run(
            str(command), "sync", "--host", server.url, "--destination", "filesystem",
            "--table-format", "delta", "--no-progress",
            cwd=tmp_path,
            env={
                "TFY_API_KEY": API_KEY, "RUNTIME__DLTHUB_TELEMETRY": "false",
                "DESTINATION__FILESYSTEM__BUCKET_URL": str(lake),
            },
        )  # fmt: skip
    table = lake / "truefoundry_audit" / "audit_logs"
    assert (table / "_delta_log").is_dir(), sorted(p.name for p in table.parent.iterdir())
    import deltalake

    ids = deltalake.DeltaTable(str(table)).to_pyarrow_table(columns=["id"]).column("id")
    assert sorted(ids.to_pylist()) == sorted(sim.ids())


def test_uv_tool_install_from_the_clone_with_the_delta_extra(
    tmp_path: Path, locked_with_delta: Path
) -> None:
    """README: `uv tool install ".[delta]"` in the clone."""
    env = _tool_env(tmp_path)
    _run(
        *_uv(), "tool", "install", "--quiet", "--python", _python(),
        "--constraints", str(locked_with_delta), ".[delta]",
        env=env,
    )  # fmt: skip
    command = tmp_path / "bin" / "tfy-audit"
    version = _run(str(command), "--version", cwd=tmp_path)
    assert version.strip() == f"tfy-audit {_project_version()}"
    _syncs_into_delta(command, tmp_path)


def test_the_wheel_installs_with_its_extra_by_pip_and_as_a_uv_tool(
    tmp_path: Path, built_wheel: Path, installed: Path, locked_with_delta: Path
) -> None:
    """README: `pip install "dist/tfy_audit-<version>-py3-none-any.whl[delta]"`, and
    `uv tool install` of the same wheel."""
    _run(
        *_uv(), "pip", "install", "--quiet", "--python", str(installed / "bin" / "python"),
        "--constraints", str(locked_with_delta), f"{built_wheel}[delta]",
    )  # fmt: skip
    _run(str(installed / "bin" / "python"), "-c", "import deltalake, s3fs")  # the extra's

    env = _tool_env(tmp_path)
    _run(
        *_uv(), "tool", "install", "--quiet", "--python", _python(),
        "--constraints", str(locked_with_delta), str(built_wheel),
        env=env,
    )  # fmt: skip
    version = _run(str(tmp_path / "bin" / "tfy-audit"), "--version", cwd=tmp_path)
    assert version.strip() == f"tfy-audit {_project_version()}"


def test_the_readme_installs_from_a_clone_or_a_wheel_never_from_an_index() -> None:
    """tfy-audit is not on a package index: `pip install "tfy-audit[delta]"` finds nothing."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in (
        'uv tool install ".[delta]"',
        'pipx install ".[delta]"',
        "uv build --wheel",
        'pip install "dist/tfy_audit-<version>-py3-none-any.whl[delta]"',
        "uv tool install dist/tfy_audit-<version>-py3-none-any.whl",
        "uv export --frozen --no-dev --no-hashes --no-emit-project --extra delta",
    ):
        assert command in readme, command
    for document in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert 'install "tfy-audit[' not in document.read_text(encoding="utf-8"), document.name
