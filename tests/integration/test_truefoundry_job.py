"""The TrueFoundry Job in examples/truefoundry/, checked by TrueFoundry's own SDK.

The SDK (`truefoundry`, pinned in examples/truefoundry/requirements.txt) is installed into a
virtualenv of its own, once per test session, and never into tfy-audit's environment: its
dependencies would move tfy-audit's locked ones. `truefoundry_check.py` runs there, validates
truefoundry.yaml and deploy.py against the SDK's models and prints the Job as the SDK
normalises it; the fields that matter are asserted here, and its command line is parsed by
tfy-audit's own argument parser.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.test_scheduling import assert_cron_expression, parses

# one worker installs the TrueFoundry SDK into its virtualenv once
pytestmark = pytest.mark.xdist_group("truefoundry_job")

EXAMPLE = REPO / "examples" / "truefoundry"
CHECKER = Path(__file__).with_name("truefoundry_check.py")
SECRET_REF = re.compile(r"^tfy-secret://[^:/]+:[^:/]+:[^:/]+$")

# docs/performance.md: peak RSS of `tfy-audit sync` at 1,000,000 events, the largest of the
# bench's sizes: the main process, and the process tree with its 2 page-decoding workers (MiB)
PEAK_RSS_MAIN_MIB = 370
PEAK_RSS_TREE_MIB = 577
MB_PER_MIB = 1.048576


def uv_command() -> list[str]:
    """uv as the Makefile finds it: on PATH, else the module pip installed."""
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


@pytest.fixture(scope="session")
def truefoundry_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("truefoundry-sdk") / "venv"
    uv = uv_command()
    for step in (
        [*uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "-r",
            str(EXAMPLE / "requirements.txt"),
        ],
    ):
        proc = subprocess.run(step, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{shlex.join(step)}: {proc.stderr}"
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def job(truefoundry_python: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(truefoundry_python), str(CHECKER), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)["job"]
    return result


def makefile_value(name: str) -> str:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name} \?= (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in the Makefile"
    return match.group(1)


def test_the_sdk_is_pinned_and_not_a_dependency_of_tfy_audit() -> None:
    assert (EXAMPLE / "requirements.txt").read_text().split() == ["truefoundry==0.17.5"]
    assert "truefoundry" not in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_job_is_built_from_this_repository_with_its_lock(job: dict[str, Any]) -> None:
    image = job["image"]
    assert image["type"] == "build"
    assert image["build_source"] == {
        "type": "local",
        "project_root_path": "./",
        "local_build": False,
    }
    spec = image["build_spec"]
    assert spec["type"] == "tfy-python-buildpack"
    assert spec["python_version"] == makefile_value("PY")
    assert spec["python_dependencies"]["type"] == "uv"
    assert spec["python_dependencies"]["uv_version"] == makefile_value("UV_VERSION")
    assert shlex.split(spec["python_dependencies"]["sync_options"]) == ["--frozen", "--no-dev"]
    assert not spec.get("pip_packages") and not spec.get("requirements_path")


def test_job_runs_sync_into_a_warehouse(job: dict[str, Any]) -> None:
    argv = shlex.split(job["image"]["build_spec"]["command"])
    assert argv[0] == "tfy-audit"
    args = parses(argv[1:])
    assert args.command == "sync"
    assert args.destination == "postgres"
    assert args.json and args.no_progress
    # as many decoder processes as the container may use cores (tfy-audit counts the node's)
    assert args.workers == job["resources"]["cpu_limit"]


def test_job_is_scheduled_and_never_overlaps(job: dict[str, Any]) -> None:
    trigger = job["trigger"]
    assert trigger["type"] == "scheduled"
    assert trigger["concurrency_policy"] == "Forbid"
    assert_cron_expression(trigger["schedule"])
    assert trigger["schedule"] == "*/10 * * * *"


def test_secrets_come_from_truefoundry_secrets(job: dict[str, Any]) -> None:
    env = job["env"]
    assert set(env) == {"TFY_HOST", "TFY_API_KEY", "DESTINATION__POSTGRES__CREDENTIALS"}
    for name in ("TFY_API_KEY", "DESTINATION__POSTGRES__CREDENTIALS"):
        assert SECRET_REF.match(env[name]), f"{name} is not a tfy-secret:// reference"
        assert env[name].endswith(f":{name}")
    assert env["TFY_HOST"].startswith("https://")


def test_resources_fit_the_measured_memory(job: dict[str, Any]) -> None:
    res = job["resources"]
    # TrueFoundry counts memory in MB, the bench in MiB
    assert res["memory_request"] >= math.ceil(PEAK_RSS_MAIN_MIB * MB_PER_MIB)
    assert res["memory_limit"] >= math.ceil(PEAK_RSS_TREE_MIB * MB_PER_MIB * 1.5)
    assert res["memory_limit"] >= res["memory_request"]
    assert res["cpu_limit"] >= res["cpu_request"] > 0


def test_runs_are_bounded_and_failures_alert(job: dict[str, Any]) -> None:
    assert 0 < job["timeout"] <= 3600
    assert job["retries"] == 0
    (alert,) = job["alerts"]
    assert alert["on_failure"] is True
    target = alert["notification_target"]
    assert target["type"] == "email" and target["notification_channel"] and target["to_emails"]
