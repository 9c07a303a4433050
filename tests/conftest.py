"""Shared fixtures: a simulator served on loopback, a temporary warehouse, and the expected rows
computed independently of the code under test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest
from tfy_audit._core.options import DestinationOptions, SyncOptions, SyncSummary
from tfy_audit._service.subjects import SubjectObservation
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

API_KEY = "test-key"
REPO = Path(__file__).resolve().parents[1]
DATASET = "truefoundry_audit"
IN_CI = os.environ.get("CI", "").lower() == "true"
_REAL_HOME = Path.home()
_REAL_UV_CACHE = str(_REAL_HOME / ".cache" / "uv")


# `make test` runs the suite in two pytest-xdist workers (`--dist loadgroup`). A test that
# asserts a wall-clock bound (a run ends within N seconds, a service clock within 2 s) is in
# this group: the group's tests run one after another on one worker, so two of them never
# share the machine with each other. Their bounds already allow for a busy machine.
WALL_CLOCK = pytest.mark.xdist_group("wall_clock")


# Grouped tests whose node id lost its group in this worker (see below): each fails.
_UNGROUPED: set[str] = set()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker under `--dist loadgroup`, note every grouped test whose node id lacks
    its group: pytest-xdist passes the group to the scheduler there, and a pytest that drops
    it (9.2, pytest-dev/pytest-xdist#1386) spreads the groups over both workers in silence,
    building each module's costly fixtures twice and running WALL_CLOCK tests side by side."""
    if getattr(config.option, "loadgroup", False):
        _UNGROUPED.update(
            item.nodeid
            for item in items
            if any(True for _ in item.iter_markers("xdist_group"))
            and not item.nodeid.rfind("@") > item.nodeid.rfind("]")  # xdist's test of a group
        )


@dataclass
class Workspace:
    db: Path
    pipelines_dir: Path

    def sync_args(self, url: str, *extra: str) -> list[str]:
        return [
            "sync",
            "--host",
            url,
            "--db",
            str(self.db),
            "--pipelines-dir",
            str(self.pipelines_dir),
            "--no-progress",
            *extra,
        ]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def ids(self, table: str = "audit_logs") -> set[str]:
        return {r[0] for r in self.query(f"select id from {DATASET}.{table}")}

    def assert_unique(self) -> None:
        """The verified-sources test: no table holds a key twice."""
        for table, key in [
            ("audit_logs", "id"),
            ("subjects", "subject_id"),
            ("audit_log_metadata", "audit_log_id || '|' || path"),
        ]:
            ((total, distinct),) = self.query(
                f"select count(*), count(distinct {key}) from {DATASET}.{table}"
            )
            assert total == distinct, f"{table} holds duplicates: {total} rows, {distinct} keys"


@pytest.fixture(autouse=True)
def _env(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if request.node.nodeid in _UNGROUPED:
        pytest.fail(
            "--dist loadgroup lost this test's xdist_group: the installed pytest and "
            "pytest-xdist do not group; run make install for the locked versions",
            pytrace=False,
        )
    isolate_env(monkeypatch, tmp_path_factory)


def isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test's environment; also for a module-scoped fixture, which is set up before the
    test's own `_env`."""
    # A home of the test's own: a developer's `tfy login` file (~/.truefoundry) or dlt's global
    # dir (~/.dlt) must not leak into any test. Tools found through the real home keep it.
    monkeypatch.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or _REAL_UV_CACHE)
    monkeypatch.setenv("PYENV_ROOT", os.environ.get("PYENV_ROOT") or str(_REAL_HOME / ".pyenv"))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("TFY_API_KEY", API_KEY)
    monkeypatch.delenv("TFY_HOST", raising=False)
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "WARNING")
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")  # no test reaches the internet


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "audit.duckdb", tmp_path / "pipelines")


NOW = datetime.now(UTC).replace(microsecond=0)


T = TypeVar("T")


class SerialExecutor(Executor):
    """Runs each task at once, in the caller's thread: tasks finish in the order submitted."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def make_simulator(
    count: int = 3_000, *, days: float = 10, seed: int = 11, **config: Any
) -> Simulator:
    cfg = SimulatorConfig(api_key=API_KEY, **config)
    return Simulator(cfg, generate_history(count, days=days, seed=seed, end=NOW))


@pytest.fixture
def simulator() -> Simulator:
    return make_simulator()


@pytest.fixture
def server(simulator: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(simulator) as srv:
        yield srv


def spec_path() -> Path:
    """The endpoint's OpenAPI spec, as the repository carries it (`spec/`)."""
    return REPO / "spec" / "truefoundry-audit-logs.openapi.yaml"


def run_cli(*args: str) -> int:
    """The real `tfy-audit` entry point, in-process."""
    from tfy_audit._cli.main import main

    return main(list(args))


def run_cli_captured(
    capsys: pytest.CaptureFixture[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `tfy-audit` entry point in-process, its exit code and output as a process's:
    for tests of what the command says before it touches anything, where a process of its own
    proves nothing more and costs a second of CPU importing dlt."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        try:
            code = run_cli(*args)
        except SystemExit as exc:  # argparse's own errors exit
            code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def run_cli_as_user(
    capfd: pytest.CaptureFixture[str], cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The real `tfy-audit` entry point in-process, run as a user's shell runs the command: in
    `cwd`, with exactly `env` as the environment (nothing of the test's own), its exit code and
    output (file descriptors included) as a process's. For tests of what a command does and
    says, where a process of its own proves nothing more and costs a second of CPU importing
    dlt; the environment and working directory are restored after, whatever the command set."""
    saved = dict(os.environ)
    capfd.readouterr()
    try:
        os.environ.clear()
        os.environ.update(env)
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(cwd)
            try:
                code = run_cli(*args)
            except SystemExit as exc:  # argparse's own errors exit
                code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def sync_with_quick_retries(ws: Workspace, url: str, **options: Any) -> SyncSummary:
    """A sync through the Python API (`run_sync`) with a backoff of 10 ms between attempts, for
    tests of faults retried, where the command's backoff (from 0.5 s, doubling) is waiting that
    proves nothing more; the client's unit tests time the backoff itself. Its summary."""
    from tfy_audit._core.query import RetryPolicy
    from tfy_audit._engine.sync import run_sync

    target = DestinationOptions(db=str(ws.db), pipelines_dir=str(ws.pipelines_dir))
    return run_sync(
        SyncOptions(
            target=target,
            host=url,
            api_key=API_KEY,
            retry=RetryPolicy(backoff_initial=0.01),
            **options,
        )
    )


def run_cli_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`tfy-audit` as a separate process, as a user or a scheduler runs it."""
    full_env = {**os.environ, "TFY_API_KEY": API_KEY, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tfy_audit", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_crashing_cli(
    args: Sequence[str], crash_at: str, *, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`tfy-audit` killing itself with SIGKILL at `crash_at` (see crashing_cli.py)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.crashing_cli", *args],
        cwd=REPO,
        env={**os.environ, "TFY_API_KEY": API_KEY, "TFY_CRASH_AT": crash_at},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the expected warehouse rows, derived from the simulator's events by hand -------------

SCALARS = {
    "action": "action",
    "requestPath": "request_path",
    "resourceId": "resource_id",
    "resourceType": "resource_type",
    "resourceName": "resource_name",
    "resourceFqn": "resource_fqn",
    "parentResourceId": "parent_resource_id",
    "parentResourceType": "parent_resource_type",
    "tenantName": "tenant_name",
    "clusterId": "cluster_id",
    "workspaceId": "workspace_id",
    "message": "message",
}
SUBJECT = {
    "subjectId": "subject__subject_id",
    "subjectType": "subject__subject_type",
    "subjectSlug": "subject__subject_slug",
    "subjectDisplayName": "subject__subject_display_name",
    "subjectPatName": "subject__subject_pat_name",
    "subjectControllerName": "subject__subject_controller_name",
    "subjectExternalIdentitySlug": "subject__subject_external_identity_slug",
}
SUBJECT_ATTRIBUTES = list(SUBJECT)[1:]  # in SubjectObservation's order
AUDIT_COLUMNS = [
    "id",
    *SCALARS.values(),
    "created_at",
    "updated_at",
    *SUBJECT.values(),
    "meta_data",
]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def expected_row(event: dict[str, Any]) -> tuple[Any, ...]:
    subject = event.get("subject") or {}
    return (
        event["id"],
        *(event.get(k) for k in SCALARS),
        ts(event["createdAt"]),
        ts(event["updatedAt"]),
        *(subject.get(k) for k in SUBJECT),
        event.get("metaData"),
    )


def warehouse_rows(ws: Workspace) -> dict[str, tuple[Any, ...]]:
    cols = ", ".join(AUDIT_COLUMNS)
    rows = ws.query(f"select {cols} from {DATASET}.audit_logs")
    out: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        values = list(row)
        created = AUDIT_COLUMNS.index("created_at")
        updated = AUDIT_COLUMNS.index("updated_at")
        values[created] = values[created].astimezone(UTC)
        values[updated] = values[updated].astimezone(UTC)
        values[-1] = None if values[-1] is None else json.loads(values[-1])
        out[row[0]] = tuple(values)
    return out


def assert_warehouse_matches(
    ws: Workspace, events: Sequence[dict[str, Any]], *, exact_ids: bool = True
) -> None:
    """Every event loaded once, every field exactly as served."""
    expected = {e["id"]: expected_row(e) for e in events}
    actual = warehouse_rows(ws)
    if exact_ids:
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        assert not missing and not extra, (
            f"missing {sorted(missing)[:5]}.. extra {sorted(extra)[:5]}"
        )
    for event_id, row in expected.items():
        assert actual[event_id] == row, f"row {event_id} differs"
    ws.assert_unique()


def expected_subjects(events: Sequence[dict[str, Any]]) -> dict[str, SubjectObservation]:
    """What the warehouse should know of each subject: the attributes of its latest event
    (ties: greatest event id) and the span of createdAt over its events."""
    out: dict[str, SubjectObservation] = {}
    for e in sorted(events, key=lambda e: (ts(e["createdAt"]), e["id"])):
        s, at = e["subject"], ts(e["createdAt"])
        first = out[s["subjectId"]].first_seen_at if s["subjectId"] in out else at
        out[s["subjectId"]] = SubjectObservation(
            s["subjectId"], *(s.get(k) for k in SUBJECT_ATTRIBUTES), first, at
        )
    return out


def events_between(sim: Simulator, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [e for e in sim.events() if start <= ts(e["createdAt"]) < end]


def wait_until_readable(stamped: datetime, bound: float = 10.0) -> None:
    """Wait until a sync started now reads an event the service stamped at `stamped`: a run
    reads to a second before its first response's `Date`, which has whole seconds (clock.py),
    so an event stamped in the last two seconds belongs to the run after. A wait on the clock,
    bounded; never longer than those two seconds in practice."""
    from tfy_audit._core.settings import SERVICE_CLOCK_MARGIN

    readable = stamped + SERVICE_CLOCK_MARGIN + timedelta(seconds=1)
    deadline = time.monotonic() + bound
    while datetime.now(UTC) <= readable:
        assert time.monotonic() < deadline, f"the clock did not pass {readable.isoformat()}"
        time.sleep(0.05)


# The seconds a simulator's clock is set ahead of ours (`clock_offset_seconds`) where a test
# adds events between syncs and its point is not the service's clock: a run then ends at our
# own `now` (clock.py: the earlier of the two clocks), so an event stamped before a sync starts
# is read by that sync, with no wait on the clock (`wait_until_readable`). Under the skew
# warning's threshold, so a run says nothing about it; test_service_clock.py keeps the
# service's clock as the bound.
SERVICE_CLOCK_AHEAD = 5.0


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI installs every dependency, so a skip means
    a check silently did not run (a missing spec, browser, database or interpreter)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped:
        for report in skipped:
            reporter.write_line(f"skipped under CI=true: {report.nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
