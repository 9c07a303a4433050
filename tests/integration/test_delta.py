"""`--destination filesystem --table-format delta` on an S3-compatible server on loopback.

moto's S3 server runs in a process of its own: deltalake's Rust calls hold the GIL while they
wait for S3, so a server thread in the test process would never answer them. The bucket URL
and credentials reach tfy-audit through dlt's config variables, as a user sets them for AWS S3;
the tests read the tables back with the `deltalake` package, as another engine would.

What must hold: each table holds each key once, and every event and field is exactly as the
simulator serves it, after a backfill, a lookback that re-reads corrected and late events, an
explicit range, `verify --repair`, and a `kill -9` during a load followed by one sync.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tfy_audit._core.options import DestinationOptions
from tfy_audit._engine.sync import make_pipeline
from tfy_audit._warehouse.lakehouse import connect
from tfy_audit._warehouse.views import VIEW_NAMES
from tfy_audit.simulator import SimulatorServer, make_event, odd_events

from tests.conftest import (
    AUDIT_COLUMNS,
    NOW,
    expected_subjects,
    free_port,
    make_simulator,
    run_cli,
    run_cli_process,
    run_crashing_cli,
    ts,
)
from tests.integration.test_destinations import (
    FAULTY_ARGS,
    assert_rows_match,
    cli_json,
    cli_output,
    deletions,
    faulty_simulator,
    report_events,
)
from tests.integration.test_sync import rebuild

# one worker starts the module's S3 server once
pytestmark = pytest.mark.xdist_group("delta")

deltalake = pytest.importorskip("deltalake")
boto3 = pytest.importorskip("boto3")

ACCESS_KEY, SECRET_KEY, REGION = "testing", "testing", "us-east-1"
KEYS = {
    "audit_logs": ("id",),
    "audit_log_metadata": ("audit_log_id", "path"),
    "subjects": ("subject_id",),
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the module's tests."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    exit_code = proc.poll()
                    raise RuntimeError(f"moto's S3 server did not start ({exit_code})") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Lake:
    endpoint: str
    bucket: str
    dataset: str
    target: tuple[str, ...]

    @property
    def env(self) -> dict[str, str]:
        """dlt's config for an S3 bucket, as a user sets it (plus the endpoint of the local
        server, which AWS S3 itself does not need)."""
        prefix = "DESTINATION__FILESYSTEM__"
        return {
            f"{prefix}BUCKET_URL": f"s3://{self.bucket}/lake",
            f"{prefix}CREDENTIALS__AWS_ACCESS_KEY_ID": ACCESS_KEY,
            f"{prefix}CREDENTIALS__AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            f"{prefix}CREDENTIALS__REGION_NAME": REGION,
            f"{prefix}CREDENTIALS__ENDPOINT_URL": self.endpoint,
        }

    def uri(self, table: str) -> str:
        return f"s3://{self.bucket}/lake/{self.dataset}/{table}"

    @property
    def storage(self) -> dict[str, str]:
        """The same bucket as `deltalake` (object_store) is told about it."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def table(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """A table as `deltalake` reads it: its current version, all of its rows."""
        dt = deltalake.DeltaTable(self.uri(table), storage_options=self.storage)
        result: pa.Table = dt.to_pyarrow_table(columns=columns)
        return result

    def rows(self, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
        data = self.table(table, columns).to_pylist()
        return [tuple(r[c] for c in columns) for r in data]

    def delete(self, table: str, predicate: str) -> None:
        deltalake.DeltaTable(self.uri(table), storage_options=self.storage).delete(predicate)

    def assert_exact(self, events: list[dict[str, Any]]) -> None:
        """Every table holds each key once; every event and field as served; the metadata
        leaves rebuild each event's metaData; the subjects as the events make them."""
        for table, key in KEYS.items():
            keys = self.rows(table, list(key))
            doubled = [k for k, n in Counter(keys).items() if n > 1]
            assert not doubled, f"{table} holds keys twice: {doubled[:5]}"
        assert_rows_match(self.rows("audit_logs", AUDIT_COLUMNS), events)
        leaves: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for audit_log_id, path, value in self.rows(
            "audit_log_metadata", ["audit_log_id", "path", "value"]
        ):
            leaves[audit_log_id].append((path, value))
        for event in events:
            meta = event.get("metaData")
            if meta in ({}, None):
                assert event["id"] not in leaves
            else:
                assert rebuild(leaves[event["id"]]) == meta, event["id"]
        assert set(leaves) <= {e["id"] for e in events}
        columns = ["subject_id", "first_seen_at", "last_seen_at"]
        subjects = {s: (f.astimezone(UTC), la.astimezone(UTC)) for s, f, la in self.rows(
            "subjects", columns
        )}  # fmt: skip
        wanted = expected_subjects(events)
        assert subjects == {s: (o.first_seen_at, o.last_seen_at) for s, o in wanted.items()}


@pytest.fixture
def lake(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    """A new bucket on the local S3 server, and dlt's config pointing at it."""
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    s3.create_bucket(Bucket=bucket)
    dataset = "tfy_delta"
    target = (
        "--destination", "filesystem", "--dataset", dataset, "--pipeline-name", "delta_test",
        "--pipelines-dir", str(tmp_path / "pipelines"),
    )  # fmt: skip
    lake = Lake(s3_endpoint, bucket, dataset, target)
    for name, value in lake.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")
    yield lake


def sync(lake: Lake, url: str, *extra: str) -> dict[str, Any]:
    return cli_json(
        "sync", "--host", url, *lake.target, "--table-format", "delta", "--no-progress", *extra
    )


def test_backfill_lookback_and_range_merge_in_place(lake: Lake) -> None:
    sim = faulty_simulator(1_500, seed=29)
    sim.add_events(odd_events(NOW - timedelta(hours=5)))  # unicode, deep JSON, nulls, ...
    # stamped from the clock now, not the session's start (NOW), which may lie further back
    # than the second sync's lookback
    now = datetime.now(UTC).replace(microsecond=0)
    recent = [make_event(random.Random(i), now - timedelta(minutes=2, seconds=i)) for i in range(3)]
    sim.add_events(recent)
    with SimulatorServer(sim) as srv:
        first = sync(lake, srv.url, *FAULTY_ARGS)
        assert first["windows"] > 1, "the offset limit should force several windows"
        assert sim.stats.faults_injected > 0
        lake.assert_exact(sim.events())
        for table in KEYS:
            assert lake.uri(table).startswith("s3://")
            assert deltalake.DeltaTable.is_deltatable(lake.uri(table), storage_options=lake.storage)

        # the service corrects an event inside the lookback, and late events arrive there
        corrected = {**recent[0], "message": "corrected by the service", "metaData": {"n": 2}}
        late = [
            make_event(random.Random(f"late{i}"), now - timedelta(minutes=3, seconds=i), subject=s)
            for i, s in enumerate(e["subject"] for e in sim.events()[:4])
        ]
        sim.add_events([corrected, *late])
        second = sync(lake, srv.url, *FAULTY_ARGS)
        assert datetime.fromisoformat(second["start"]) < ts(recent[0]["createdAt"])
        assert second["rows"]["audit_logs"] >= len(late) + len(recent)
        lake.assert_exact(sim.events())
        messages = dict(lake.rows("audit_logs", ["id", "message"]))
        assert messages[recent[0]["id"]] == "corrected by the service"

        # an explicit range re-reads a whole day: updated in place, nothing added
        day = ts(sim.events()[len(sim.events()) // 2]["createdAt"]).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        third = sync(
            lake,
            srv.url,
            *FAULTY_ARGS,
            "--start",
            day.isoformat(),
            "--end",
            (day + timedelta(days=1)).isoformat(),
        )
        assert third["rows"]["audit_logs"] > 50
        lake.assert_exact(sim.events())

        # verify and report read the Delta tables without being told the format
        assert run_cli("verify", "--host", srv.url, *lake.target) == 0
        paging = ("--page-size", "100", "--max-offset", "300")  # as the syncs paged
        assert run_cli("verify", "--host", srv.url, *lake.target, "--ids", *paging) == 0


def test_verify_repair_restores_deleted_rows(lake: Lake, tmp_path: Path) -> None:
    sim = make_simulator(1_200, seed=31)
    with SimulatorServer(sim) as srv:
        sync(lake, srv.url)
        gone = sorted(e["id"] for e in sim.events())[::97]
        quoted = ", ".join(f"'{i}'" for i in gone)
        lake.delete("audit_logs", f"id IN ({quoted})")
        lake.delete("audit_log_metadata", f"audit_log_id IN ({quoted})")
        assert not {r[0] for r in lake.rows("audit_logs", ["id"])} & set(gone)
        # late events of past days, behind the mark: only a repair brings them
        late = [
            make_event(random.Random(f"old{i}"), NOW - timedelta(days=3, hours=i)) for i in range(5)
        ]
        sim.add_events(late)
        assert run_cli("verify", "--host", srv.url, *lake.target) == 3
        assert run_cli("verify", "--host", srv.url, *lake.target, "--repair") == 0
        lake.assert_exact(sim.events())
        assert run_cli("verify", "--host", srv.url, *lake.target) == 0
        out = tmp_path / "report.html"
        assert report_events(*lake.target, "--out", str(out)) == len(sim.events())


@pytest.mark.parametrize("crash_at", ["load:1", "complete:2"])
def test_kill_9_during_a_load_then_one_sync_is_exact(lake: Lake, crash_at: str) -> None:
    sim = make_simulator(4_000, days=20, latency_ms=1)
    args = [
        "sync", "--host", "", *lake.target, "--table-format", "delta", "--no-progress",
        "--chunk-events", "1500", "--max-offset", "1000",
    ]  # fmt: skip
    with SimulatorServer(sim) as srv:
        args[2] = srv.url
        crashed = run_crashing_cli(args, crash_at, timeout=180)
        assert crashed.returncode == -9, crashed.stderr
        assert run_cli(*args) == 0
    lake.assert_exact(sim.events())


def test_views_run_as_sql_over_the_delta_tables(lake: Lake) -> None:
    sim = make_simulator(800, seed=37)
    with SimulatorServer(sim) as srv:
        sync(lake, srv.url)
    options = DestinationOptions(
        "filesystem",
        dataset=lake.dataset,
        pipeline_name="delta_test",
        pipelines_dir=str(Path(lake.target[-1])),
    )
    pipeline = make_pipeline(options)
    pipeline.sync_destination()
    con = connect(pipeline)
    try:
        for view in VIEW_NAMES:
            con.execute(f"select count(*) from {lake.dataset}.{view}").fetchall()
        ((n,),) = con.execute(f"select count(*) from {lake.dataset}.deletions").fetchall()
        assert n == deletions(sim.events()) > 0
        ((events,),) = con.execute(
            f"select sum(events) from {lake.dataset}.daily_activity"
        ).fetchall()
        assert events == len(sim.events())
    finally:
        con.close()


def test_table_format_needs_the_filesystem_destination(tmp_path: Path) -> None:
    code = run_cli(
        "sync", "--host", "http://127.0.0.1:9", "--db", str(tmp_path / "a.duckdb"),
        "--table-format", "delta", "--no-progress",
    )  # fmt: skip
    assert code == 2


def test_a_parquet_dataset_is_not_switched_to_delta(lake: Lake) -> None:
    sim = make_simulator(300, seed=41)
    with SimulatorServer(sim) as srv:
        cli_json("sync", "--host", srv.url, *lake.target, "--no-progress")
        code = run_cli("sync", "--host", srv.url, *lake.target, "--table-format", "delta")
    assert code == 2


def test_a_range_killed_during_its_load_still_drops_the_leaves_an_event_lost(lake: Lake) -> None:
    """The leaves an event lost are deleted after its load even when that load is finished by
    the next run (which does not read the event's day again)."""
    sim = make_simulator(600, days=10, seed=43)
    with SimulatorServer(sim) as srv:
        sync(lake, srv.url)
        old = next(e for e in sim.events() if len(e.get("metaData") or {}) >= 2)
        at = ts(old["createdAt"])
        sim.add_events([{**old, "metaData": {"kept": True}}])
        start, end = at - timedelta(hours=1), at + timedelta(hours=1)
        args = [
            "sync", "--host", srv.url, *lake.target, "--no-progress",
            "--start", start.isoformat(), "--end", end.isoformat(),
        ]  # fmt: skip
        crashed = run_crashing_cli(args, "complete:1", timeout=180)
        assert crashed.returncode == -9, crashed.stderr
        summary = sync(lake, srv.url)
        assert summary["recovered_packages"] == 1
        assert datetime.fromisoformat(summary["start"]) > end
    lake.assert_exact(sim.events())


# -- no download at run time, the first run's figures, the missing extra ---------------------


@pytest.fixture
def local_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """A Delta dataset's target on a local folder, as the README's local recipe sets it."""
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")
    return (
        "--destination", "filesystem", "--dataset", "tfy_delta", "--pipeline-name", "delta_local",
        "--pipelines-dir", str(tmp_path / "pipelines"),
    )  # fmt: skip


def _no_duckdb_extensions() -> None:
    """Nothing was downloaded into DuckDB's extension folder (under the test's own HOME)."""
    folder = Path.home() / ".duckdb"
    assert not folder.exists(), sorted(str(p) for p in folder.rglob("*"))


def _status_of(*target: str) -> dict[str, Any]:
    code, out = cli_output("status", *target, "--json")
    document: dict[str, Any] = json.loads(out)
    assert code == 0, document
    return document


def test_status_and_the_first_run_on_a_local_delta_folder(local_lake: tuple[str, ...]) -> None:
    sim = make_simulator(700, seed=47)
    with SimulatorServer(sim) as srv:
        code, out = cli_output(
            "sync", "--host", srv.url, *local_lake, "--table-format", "delta", "--no-progress"
        )
        assert code == 0, out
        # the first run's events are all new: none was in the destination before
        assert "  new events: 700\n" in out, out
        # late events inside the lookback: the next run's new events are those, exactly
        late = [
            make_event(random.Random(f"late{i}"), datetime.now(UTC) - timedelta(seconds=5))
            for i in range(2)
        ]
        sim.add_events(late)
        second = cli_json("sync", "--host", srv.url, *local_lake, "--no-progress")
    assert second["events_new"] == 2
    assert second["events_reread"] == second["events_read"] - 2
    document = _status_of(*local_lake)
    (item,) = document["filter_sets"]
    assert item["last_run"]["status"] == "ok"
    assert item["last_successful_run"]["audit_log_rows"] == second["rows"]["audit_logs"]
    assert item["high_water_mark"] == second["covered_until"]
    assert item["open_incomplete_windows"] == []
    # the README's local recipe ends with a query
    ids = sorted(e["id"] for e in sim.events())
    assert len(ids) == 702
    answer = cli_json("sql", *local_lake, "select id from audit_logs order by id", "--limit", "0")
    assert answer["rows"] == [[i] for i in ids]
    _no_duckdb_extensions()


def test_status_and_sql_on_s3_download_nothing(lake: Lake) -> None:
    sim = make_simulator(400, seed=53)
    with SimulatorServer(sim) as srv:
        first = sync(lake, srv.url)
    assert first["events_new"] == 400
    document = _status_of(*lake.target)
    (item,) = document["filter_sets"]
    assert item["last_run"]["status"] == "ok"
    assert item["last_run"]["audit_log_rows"] == 400
    assert item["high_water_mark"] == first["covered_until"]
    deleted = sorted(e["id"] for e in sim.events() if e["action"].startswith("DELETE_"))
    answer = cli_json("sql", *lake.target, "select id from deletions order by id", "--limit", "0")
    assert answer["rows"] == [[i] for i in deleted] and deleted
    _no_duckdb_extensions()


_BLOCK_DELTALAKE = """
import sys


class _NoDeltalake:
    def find_spec(self, name, path=None, target=None):
        if name == "deltalake" or name.startswith("deltalake."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoDeltalake())
"""


def test_table_format_delta_without_the_extra_stops_before_any_request(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCK_DELTALAKE, encoding="utf-8")
    sim = make_simulator(300, seed=59)
    env = {
        "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
        "DESTINATION__FILESYSTEM__BUCKET_URL": str(tmp_path / "lake"),
        "HOME": str(tmp_path),
    }
    with SimulatorServer(sim) as srv:
        done = run_cli_process(
            "sync", "--host", srv.url, "--destination", "filesystem", "--table-format", "delta",
            "--pipelines-dir", str(tmp_path / "pipelines"), "--no-progress", env=env,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert sim.stats.requests == 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tfy-audit: error: --table-format delta needs the deltalake"), lines
    assert 'pip install ".[delta]" in the tfy-audit clone' in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_plain_parquet_on_s3_downloads_nothing(lake: Lake, tmp_path: Path) -> None:
    """The same bucket without a table format: a second sync (which reads the subjects and
    the ids already loaded), status, verify, report and sql read the Parquet files through
    the destination's own client, not DuckDB's `httpfs`."""
    sim = make_simulator(400, seed=73)
    with SimulatorServer(sim) as srv:
        cli_json("sync", "--host", srv.url, *lake.target, "--no-progress")
        late = [
            make_event(random.Random(f"pq{i}"), datetime.now(UTC) - timedelta(seconds=5))
            for i in range(3)
        ]
        sim.add_events(late)
        second = cli_json("sync", "--host", srv.url, *lake.target, "--no-progress")
        assert second["events_new"] == 3
        assert run_cli("verify", "--host", srv.url, *lake.target) == 0
    (item,) = _status_of(*lake.target)["filter_sets"]
    assert item["last_run"]["status"] == "ok"
    assert item["high_water_mark"] == second["covered_until"]
    answer = cli_json("sql", *lake.target, "select id from audit_logs order by id", "--limit", "0")
    assert answer["rows"] == [[e["id"]] for e in sorted(sim.events(), key=lambda e: e["id"])]
    assert report_events(*lake.target, "--out", str(tmp_path / "r.html")) == len(sim.events())
    _no_duckdb_extensions()


def test_reading_delta_without_the_extra_is_one_line(
    local_lake: tuple[str, ...], tmp_path: Path
) -> None:
    sim = make_simulator(200, seed=79)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCK_DELTALAKE, encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    with SimulatorServer(sim) as srv:
        sync_args = ("sync", "--host", srv.url, *local_lake, "--no-progress")
        cli_json(*sync_args, "--table-format", "delta")
        sim.reset_stats()
        runs = [
            run_cli_process(*sync_args, env=env),  # the dataset's format, without the flag
            run_cli_process("status", *local_lake, env=env),
            run_cli_process("sql", *local_lake, "select count(*) from audit_logs", env=env),
        ]
    assert sim.stats.requests == 0
    for done in runs:
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            "tfy-audit: error: dataset tfy_delta (Delta tables) needs the deltalake package, "
            'which is not installed; install it with pip install ".[delta]" in the tfy-audit '
            'clone (or uv tool install --reinstall ".[delta]")\n'
        )


def test_the_first_runs_start_is_read_from_sync_runs_offline(lake: Lake) -> None:
    """For state written before it kept the first start, status and report read it from
    `sync_runs`: on a bucket through the same reader, with no extension downloaded."""
    from tfy_audit._service.client import AuditLogFilters
    from tfy_audit._warehouse.run_log import first_run_start

    sim = make_simulator(300, seed=83)
    with SimulatorServer(sim) as srv:
        first = sync(lake, srv.url, "--since", "3d")
    options = DestinationOptions(
        "filesystem", dataset=lake.dataset, pipeline_name="delta_test",
        pipelines_dir=str(Path(lake.target[-1])),
    )  # fmt: skip
    pipeline = make_pipeline(options)
    pipeline.sync_destination()
    started = first_run_start(pipeline, AuditLogFilters())
    assert started == datetime.fromisoformat(first["start"])
    _no_duckdb_extensions()
