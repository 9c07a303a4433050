"""The Kubernetes CronJobs in examples/kubernetes/: parsed, and the fields that decide whether
a scheduled sync is safe checked: one run at a time, a deadline, the key from a Secret, the
DuckDB file on a volume (or a warehouse and no volume), memory for the measured peak, and a
command line that tfy-audit's own parser accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from tfy_audit._cli.main import sync_options_from_args

from tests.conftest import REPO
from tests.integration.test_scheduling import assert_cron_expression, parses
from tests.integration.test_truefoundry_job import (
    PEAK_RSS_MAIN_MIB,
    PEAK_RSS_TREE_MIB,
    makefile_value,
)

EXAMPLE = REPO / "examples" / "kubernetes"
MANIFESTS = ["tfy-audit-duckdb.yaml", "tfy-audit-postgres.yaml"]
SECRET_NAMES = {"TFY_API_KEY", "DESTINATION__POSTGRES__CREDENTIALS"}


def documents(name: str) -> dict[str, dict[str, Any]]:
    """The manifest's documents by kind (each kind at most once)."""
    docs = [d for d in yaml.safe_load_all((EXAMPLE / name).read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), f"{name} repeats a kind"
    return by_kind


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, f"memory {quantity!r} is not in Mi or Gi"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("name", MANIFESTS)
def test_cronjob_runs_one_sync_at_a_time_within_a_deadline(name: str) -> None:
    cron = documents(name)["CronJob"]
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert_cron_expression(spec["schedule"])
    job = spec["jobTemplate"]["spec"]
    deadline = job["activeDeadlineSeconds"]
    assert isinstance(deadline, int) and 0 < deadline <= 3600
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = parses([str(a) for a in container["args"]])
    assert args.command == "sync" and args.json and args.no_progress
    if "--max-duration" in container["args"]:  # tfy-audit's own limit ends the run first
        limit = args.max_duration
        seconds = limit.total_seconds() if hasattr(limit, "total_seconds") else float(limit)
        assert 0 < seconds < deadline


@pytest.mark.parametrize("name", MANIFESTS)
def test_secrets_come_from_the_manifests_secret(name: str) -> None:
    docs = documents(name)
    secret = docs["Secret"]
    (container,) = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "TFY_API_KEY" in env
    for var, entry in env.items():
        if var in SECRET_NAMES:
            assert "value" not in entry, f"{var} is written into the CronJob"
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]
        else:
            assert var == "TFY_HOST" and entry["value"].startswith("https://")


@pytest.mark.parametrize("name", MANIFESTS)
def test_resources_fit_the_measured_memory_and_the_workers(name: str) -> None:
    pod = documents(name)["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    res = container["resources"]
    assert mebibytes(res["requests"]["memory"]) >= PEAK_RSS_MAIN_MIB
    assert mebibytes(res["limits"]["memory"]) >= PEAK_RSS_TREE_MIB * 1.5
    args = parses([str(a) for a in container["args"]])
    assert args.workers == cpus(res["limits"]["cpu"])
    assert cpus(res["requests"]["cpu"]) <= cpus(res["limits"]["cpu"])


def test_duckdb_file_lives_on_the_claimed_volume() -> None:
    docs = documents("tfy-audit-duckdb.yaml")
    claim = docs["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one writer
    assert claim["spec"]["resources"]["requests"]["storage"]
    pod = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parses([str(a) for a in container["args"]])
    target = sync_options_from_args(args).target  # flags left out take the options' defaults
    assert target.destination == "duckdb" and target.pipelines_dir is None  # beside the file
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [
        m for m in container["volumeMounts"] if Path(args.db).is_relative_to(m["mountPath"])
    ]
    volume = volumes[mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_warehouse_cronjob_keeps_nothing_in_the_pod() -> None:
    docs = documents("tfy-audit-postgres.yaml")
    assert set(docs) == {"Secret", "CronJob"}
    pod = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = parses([str(a) for a in container["args"]])
    assert args.destination == "postgres"
    assert "volumes" not in pod
    env = {e["name"] for e in container["env"]}
    assert "DESTINATION__POSTGRES__CREDENTIALS" in env


def test_image_runs_tfy_audit_as_the_pods_user() -> None:
    text = (EXAMPLE / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM python:(\S+)-slim$", text, re.MULTILINE)
    assert base and base[1] == makefile_value("PY")
    uv_image = re.search(r"ghcr.io/astral-sh/uv:(\S+) ", text)
    assert uv_image and uv_image[1] == makefile_value("UV_VERSION")
    syncs = [shlex.split(m) for m in re.findall(r"^RUN (uv sync .*)$", text, re.MULTILINE)]
    assert syncs and all({"--frozen", "--no-dev"} <= set(s) for s in syncs)
    assert re.search(r'^ENTRYPOINT \["tfy-audit"\]$', text, re.MULTILINE)
    (user,) = re.findall(r"^USER (\d+)$", text, re.MULTILINE)
    for name in MANIFESTS:
        pod = documents(name)["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(user)
        assert pod["securityContext"]["runAsNonRoot"] is True
