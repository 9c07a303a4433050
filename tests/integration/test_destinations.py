"""`tfy-audit` against destinations other than DuckDB: PostgreSQL and the filesystem (Parquet).

PostgreSQL merges on the event id like DuckDB, so the same guarantees hold: every event once,
every field as served, no duplicates after re-reads, views, `verify` clean.

The filesystem destination has no merge: dlt falls back to `append`. So a chunk that re-reads
a range already loaded (the lookback of the next sync, an explicit `--start`/`--end`, a
`verify --repair`) skips the ids already in the files: `audit_logs` and `audit_log_metadata`
hold every event once, and `verify` and `report` count right. `subjects` gets a new row in each
load that changes a subject; the newest load's row per subject is the current one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pytest
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import DEFAULT_LOOKBACK, MIN_WINDOW
from tfy_audit._warehouse.destination import make_pipeline
from tfy_audit._warehouse.readback import read_subjects
from tfy_audit._warehouse.views import VIEW_NAMES
from tfy_audit.simulator import Simulator, SimulatorServer, format_ts, make_event, odd_events

from tests.conftest import (
    API_KEY,
    AUDIT_COLUMNS,
    IN_CI,
    NOW,
    expected_row,
    expected_subjects,
    make_simulator,
    run_cli,
    run_cli_process,
    ts,
)

# one worker makes the module's filesystem loads once
pytestmark = pytest.mark.xdist_group("destinations")

POSTGRES_URL = os.environ.get(
    # trust auth ignores the password, but dlt refuses a URL without one
    "TFY_AUDIT_TEST_POSTGRES",
    "postgresql://postgres:postgres@127.0.0.1:5432/test",
)

# meta_data as text, parsed by `exact_json` (psycopg2 would parse jsonb numbers as floats)
TEXT_COLUMNS = ", ".join(c if c != "meta_data" else "meta_data::text" for c in AUDIT_COLUMNS)

UNIQUE_KEYS = {
    "audit_logs": ("id",),
    "subjects": ("subject_id",),
    "audit_log_metadata": ("audit_log_id", "path"),
}


def faulty_simulator(count: int, *, seed: int = 11) -> Simulator:
    """Shuffled pages, 429s to retry at once, and a small offset limit that forces windows."""
    return make_simulator(
        count,
        seed=seed,
        order="shuffled",
        max_offset=300,
        rate_429=0.1,
        retry_after="0",
        fault_seed=seed,
    )


FAULTY_ARGS = ("--page-size", "100", "--max-offset", "300", "--no-progress")


def cli_output(*args: str) -> tuple[int, str]:
    """Run `tfy-audit` in-process; its exit code and what it printed to stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli(*args)
    return code, out.getvalue()


def cli_json(*args: str) -> dict[str, Any]:
    """Run `tfy-audit ... --json` in-process; its summary as a dict."""
    code, out = cli_output(*args, "--json")
    assert code == 0, f"tfy-audit {' '.join(args)} exited {code}"
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def report_events(*args: str) -> int:
    """`tfy-audit report ...`; the number of events it says the report shows."""
    code, out = cli_output("report", *args)
    assert code == 0, f"tfy-audit report exited {code}"
    match = re.search(r"^wrote .+: ([\d,]+) events,", out, re.MULTILINE)
    assert match, out
    return int(match.group(1).replace(",", ""))


def exact_json(text: str | None) -> Any:
    """JSON with every number as an exact decimal. PostgreSQL's jsonb keeps numbers as
    `numeric` and prints 1.7976931348623157e308 as its 309 digits, which `json.loads` reads
    as an int: the same number, not the same Python type."""
    if text is None:
        return None
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def normalized(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A warehouse row as `expected(...)` builds it: UTC datetimes, `meta_data` (JSON text)
    parsed with exact numbers."""
    values = list(row)
    for name in ("created_at", "updated_at"):
        i = AUDIT_COLUMNS.index(name)
        values[i] = values[i].astimezone(UTC)
    values[-1] = exact_json(values[-1])
    return tuple(values)


def expected(event: dict[str, Any]) -> tuple[Any, ...]:
    row = list(expected_row(event))
    row[-1] = None if row[-1] is None else exact_json(json.dumps(row[-1]))
    return tuple(row)


def assert_rows_match(actual_rows: list[tuple[Any, ...]], events: list[dict[str, Any]]) -> None:
    """Exactly the events' ids, each once, and every field as served."""
    counts = Counter(r[0] for r in actual_rows)
    repeated = {k: n for k, n in counts.items() if n > 1}
    assert not repeated, f"ids loaded more than once: {sorted(repeated)[:5]}"
    actual = {r[0]: normalized(r) for r in actual_rows}
    wanted = {e["id"]: expected(e) for e in events}
    missing, extra = wanted.keys() - actual.keys(), actual.keys() - wanted.keys()
    assert not missing and not extra, f"missing {sorted(missing)[:5]}.. extra {sorted(extra)[:5]}"
    for event_id, row in wanted.items():
        assert actual[event_id] == row, f"row {event_id} differs"


def deletions(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if str(e.get("action") or "").upper().startswith("DELETE_"))


# -- PostgreSQL --------------------------------------------------------------------------------


def _postgres_reachable_or_skip() -> None:
    parts = urlsplit(POSTGRES_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        reason = f"PostgreSQL is not reachable at {host}:{port} ({exc})"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)


@contextlib.contextmanager
def postgres() -> Iterator[Any]:
    import psycopg2

    # a session zone far from UTC: nothing may depend on it
    con = psycopg2.connect(POSTGRES_URL, options="-c TimeZone=Asia/Kolkata")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            yield cur
    finally:
        con.close()


@pytest.fixture
def postgres_dataset(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh schema name; the schema and dlt's staging schema are dropped afterwards."""
    _postgres_reachable_or_skip()
    dataset = f"tfy_test_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    try:
        yield dataset
    finally:
        with postgres() as cur:
            for schema in (dataset, f"{dataset}_staging"):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
def test_postgres_sync_twice_loads_every_event_once_with_views_and_verify(
    postgres_dataset: str, tmp_path: Path
) -> None:
    ds = postgres_dataset
    sim = faulty_simulator(2_000)
    sim.add_events(odd_events(NOW - timedelta(hours=3)))  # unicode, deep JSON, nulls, ...
    events = sim.events()

    def target(pipelines_dir: Path) -> tuple[str, ...]:
        return (
            "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(pipelines_dir),
        )  # fmt: skip

    def audit_rows() -> list[tuple[Any, ...]]:
        with postgres() as cur:
            cur.execute(f'SELECT {TEXT_COLUMNS} FROM "{ds}".audit_logs')
            return list(cur.fetchall())

    with SimulatorServer(sim) as srv:
        first = cli_json("sync", "--host", srv.url, *target(tmp_path / "a"), *FAULTY_ARGS)
        assert sim.stats.faults_injected > 0
        assert first["windows"] > 1, "the offset limit should force several windows"
        rows = audit_rows()
        assert_rows_match(rows, events)
        # what the next sync starts from, read in a session zone far from UTC
        options = DestinationOptions(
            "postgres", dataset=ds, pipeline_name=f"pg_{ds}", pipelines_dir=str(tmp_path / "a")
        )
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PGTZ", "Asia/Kolkata")
            subjects = read_subjects(make_pipeline(options))
        assert subjects == expected_subjects(events)
        stamps = [t for s in subjects.values() for t in (s.first_seen_at, s.last_seen_at)]
        assert {t.tzinfo for t in stamps if t is not None} == {UTC}

        # a fresh working dir: the mark must come back from PostgreSQL itself
        second = cli_json("sync", "--host", srv.url, *target(tmp_path / "b"), *FAULTY_ARGS)
        mark = datetime.fromisoformat(first["covered_until"])
        assert datetime.fromisoformat(second["start"]) == mark - DEFAULT_LOOKBACK
        assert sorted(audit_rows()) == sorted(rows), "the second sync changed the table"

        assert run_cli("verify", "--host", srv.url, *target(tmp_path / "b")) == 0
        # the ids are paged as the sync pages: within the service's depth
        paging = ("--page-size", "100", "--max-offset", "300")
        assert run_cli("verify", "--host", srv.url, *target(tmp_path / "b"), "--ids", *paging) == 0

    with postgres() as cur:
        for table, key in UNIQUE_KEYS.items():
            cols = ", ".join(key)
            cur.execute(f'SELECT count(*), count(DISTINCT ({cols})) FROM "{ds}".{table}')
            total, distinct = cur.fetchone()
            assert total == distinct, f"{table} holds duplicates: {total} rows, {distinct} keys"
        cur.execute(f'SELECT count(DISTINCT subject_id) FROM "{ds}".subjects')
        assert cur.fetchone()[0] == len({e["subject"]["subjectId"] for e in events})
        cur.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = %s", (ds,)
        )
        assert {r[0] for r in cur.fetchall()} == set(VIEW_NAMES)
        cur.execute(f'SELECT count(*) FROM "{ds}".deletions')
        assert cur.fetchone()[0] == deletions(events) > 0
        cur.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'audit_logs' AND column_name = 'meta_data'",
            (ds,),
        )
        assert cur.fetchone()[0] == "jsonb"


@pytest.mark.postgres
def test_postgres_keeps_empty_strings(postgres_dataset: str, tmp_path: Path) -> None:
    sim = make_simulator(300, seed=3)
    empty = {e["id"] for e in sim.events() if e.get("clusterId") == ""}
    assert empty, "the simulator serves empty clusterIds"
    with SimulatorServer(sim) as srv:
        code = run_cli(
            "sync", "--host", srv.url, "--destination", "postgres",
            "--dataset", postgres_dataset, "--pipeline-name", f"pg_{postgres_dataset}",
            "--pipelines-dir", str(tmp_path), "--no-progress",
        )  # fmt: skip
    assert code == 0
    with postgres() as cur:
        cur.execute(f"SELECT id FROM \"{postgres_dataset}\".audit_logs WHERE cluster_id = ''")
        assert {r[0] for r in cur.fetchall()} == empty


@pytest.mark.postgres
def test_postgres_and_filesystem_syncs_in_one_folder_keep_their_own_working_dirs(
    postgres_dataset: str, tmp_path: Path
) -> None:
    """The same pipeline name, dataset and folder, two destinations: each gets a working dir
    of its own beside the user (`./.tfy-audit/pipelines/<destination>-<dataset>`), never
    dlt's global one, so neither sees the other's state ("destination ... differs")."""
    folder, global_dir = tmp_path / "audit", tmp_path / "dlt-global"
    folder.mkdir()
    ds = postgres_dataset
    sim = make_simulator(700, days=3)
    env = {
        "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL,
        "DESTINATION__FILESYSTEM__BUCKET_URL": str(tmp_path / "bucket"),
        "DLT_DATA_DIR": str(global_dir),  # dlt's global dir, for the test: stays unused
    }
    with SimulatorServer(sim) as srv:
        runs = []
        for destination in ("postgres", "filesystem", "postgres", "filesystem"):
            args = ("sync", "--host", srv.url, "--destination", destination, "--dataset", ds)
            proc = subprocess.run(
                [sys.executable, "-m", "tfy_audit", *args, "--no-progress"],
                cwd=folder,
                env={**os.environ, "TFY_API_KEY": API_KEY, **env},
                capture_output=True,
                text=True,
                timeout=180,
            )
            runs.append(proc)
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "differs" not in proc.stderr, proc.stderr
        assert "WARNING" not in proc.stderr, proc.stderr
    assert [r.stdout.count("first sync: read") for r in runs] == [1, 1, 0, 0]
    work = folder / ".tfy-audit" / "pipelines"
    assert sorted(p.name for p in work.iterdir()) == [f"filesystem-{ds}", f"postgres-{ds}"]
    for name in work.iterdir():
        assert (name / "tfy_audit").is_dir(), name
    assert not global_dir.exists()
    with postgres() as cur:
        cur.execute(f'SELECT id FROM "{ds}".audit_logs')
        assert sorted(r[0] for r in cur.fetchall()) == sorted(sim.ids())
    parquet_ids = [
        r[0] for r in query(f"SELECT id FROM {parquet(tmp_path / 'bucket', ds, 'audit_logs')}")
    ]
    assert sorted(parquet_ids) == sorted(sim.ids())


# -- filesystem (Parquet) ----------------------------------------------------------------------


def parquet(bucket: Path, dataset: str, table: str) -> str:
    """dlt's default layout, `{table_name}/{load_id}.{file_id}.{ext}`."""
    return f"read_parquet('{bucket}/{dataset}/{table}/*.parquet', filename = true)"


def latest_rows_sql(bucket: Path, dataset: str, table: str, key: str, columns: str) -> str:
    """The read that gives every key exactly once on an append-only dataset: the rows of the
    newest completed load holding the key (dlt records completed loads, status 0, in
    `_dlt_loads`; a crashed load may have left files of its own). For `audit_log_metadata`,
    `key` is `audit_log_id`: an event read again replaces all of its leaves, as the merge does."""
    load_id = r"regexp_extract(filename, '/(\d+\.\d+)\.[^/]+\.parquet$', 1)"
    return f"""
        WITH rows AS (
            SELECT *, {load_id} AS load_id FROM {parquet(bucket, dataset, table)}
        ),
        completed AS (
            SELECT load_id FROM read_json('{bucket}/{dataset}/_dlt_loads/*.jsonl')
            WHERE status = 0
        ),
        ranked AS (
            SELECT *, dense_rank() OVER (
                PARTITION BY {key} ORDER BY CAST(load_id AS DOUBLE) DESC
            ) AS newest
            FROM rows WHERE load_id IN (SELECT load_id FROM completed)
        )
        SELECT {columns} FROM ranked WHERE newest = 1
    """


def query(sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@dataclass
class FilesystemLoad:
    sim: Simulator
    url: str
    bucket: Path
    dataset: str
    target: tuple[str, ...]
    runs: list[dict[str, Any]] = field(default_factory=list)  # the syncs' JSON summaries
    after_first: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)  # raw rows
    late: list[dict[str, Any]] = field(default_factory=list)  # arrived after the first sync
    reread_by_lookback: list[dict[str, Any]] = field(default_factory=list)
    reread_by_range: list[dict[str, Any]] = field(default_factory=list)

    def raw(self, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
        return query(f"SELECT {columns} FROM {parquet(self.bucket, self.dataset, table)}")

    def latest(self, table: str, key: str, columns: str) -> list[tuple[Any, ...]]:
        return query(latest_rows_sql(self.bucket, self.dataset, table, key, columns))


def served(sim: Simulator, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """What the simulator returns for a sync range: windows are queried from 1 ms before their
    start, and the simulator (by default) includes both bounds."""
    return [e for e in sim.events() if start - MIN_WINDOW <= ts(e["createdAt"]) <= end]


def summary_range(summary: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(summary["start"]), datetime.fromisoformat(summary["end"])


@pytest.fixture(scope="module")
def filesystem_load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesystemLoad]:
    """Three syncs into one bucket: the first loads everything; the second, incremental,
    re-reads its lookback, where a few late events of known subjects have arrived; the third
    re-reads an explicit range of one day."""
    root = tmp_path_factory.mktemp("filesystem")
    sim = faulty_simulator(1_500, seed=23)
    # recent events, so the next sync's lookback re-reads something: stamped from the clock
    # now, not the session's start (NOW), which may lie further back than the lookback
    now = datetime.now(UTC).replace(microsecond=0)
    sim.add_events(
        [make_event(random.Random(i), now - timedelta(minutes=2, seconds=i)) for i in range(3)]
    )
    target = (
        "--destination", "filesystem", "--dataset", "tfy_parquet",
        "--pipeline-name", "fs_test", "--pipelines-dir", str(root / "pipelines"),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp, SimulatorServer(sim) as srv:
        load = FilesystemLoad(sim, srv.url, root / "bucket", "tfy_parquet", target)
        mp.setenv("TFY_API_KEY", API_KEY)
        mp.setenv("RUNTIME__LOG_LEVEL", "ERROR")  # dlt warns about the append fallback
        # a plain local path works; dlt turns it into file://
        mp.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(load.bucket))

        def sync(*extra: str) -> dict[str, Any]:
            load.runs.append(cli_json("sync", "--host", srv.url, *target, *FAULTY_ARGS, *extra))
            return load.runs[-1]

        sync()
        load.after_first = {
            "audit_logs": load.raw("audit_logs", ", ".join(AUDIT_COLUMNS)),
            "audit_log_metadata": load.raw("audit_log_metadata", "audit_log_id, path, value"),
        }

        load.late = [
            make_event(random.Random(f"late{i}"), now - timedelta(minutes=3, seconds=i), subject=s)
            for i, s in enumerate(e["subject"] for e in sim.events()[:4])
        ]
        sim.add_events(load.late)
        late_ids = {e["id"] for e in load.late}
        second = served(sim, *summary_range(sync()))
        load.reread_by_lookback = [e for e in second if e["id"] not in late_ids]

        # the busiest day, from the hour of its first event
        days = Counter(ts(e["createdAt"]).date() for e in sim.events())
        busiest = days.most_common(1)[0][0]
        start = min(
            ts(e["createdAt"]) for e in sim.events() if ts(e["createdAt"]).date() == busiest
        )
        start = start.replace(minute=0, second=0, microsecond=0)
        end = min(start + timedelta(days=1), NOW)
        third = sync("--start", start.isoformat(), "--end", end.isoformat())
        load.reread_by_range = served(sim, *summary_range(third))
        yield load


def test_filesystem_first_sync_writes_every_event_once_as_parquet(
    filesystem_load: FilesystemLoad,
) -> None:
    load = filesystem_load
    layout = load.bucket / load.dataset
    for table in ("audit_logs", "audit_log_metadata", "subjects", "sync_windows"):
        names = [f.name for f in (layout / table).iterdir()]
        assert names, table
        assert all(re.fullmatch(r"\d+\.\d+\.[0-9a-f]+\.parquet", n) for n in names), names
    late = {e["id"] for e in load.late}
    before_late = [e for e in load.sim.events() if e["id"] not in late]
    assert_rows_match(load.after_first["audit_logs"], before_late)
    leaves = load.after_first["audit_log_metadata"]
    assert len(leaves) == len({(r[0], r[1]) for r in leaves})


def test_filesystem_rereads_add_only_what_is_missing(
    filesystem_load: FilesystemLoad,
) -> None:
    """No merge on the filesystem: a re-read range skips the ids already written."""
    load = filesystem_load
    assert len(load.reread_by_lookback) >= 3
    assert len(load.reread_by_range) > 50
    assert load.runs[1]["rows"]["audit_logs"] == len(load.late)
    assert load.runs[2]["rows"].get("audit_logs", 0) == 0

    copies = Counter(r[0] for r in load.raw("audit_logs", "id"))
    assert copies == Counter(e["id"] for e in load.sim.events())
    leaves = load.raw("audit_log_metadata", "audit_log_id, path")
    assert len(leaves) == len(set(leaves))

    # a load writes a subject row only when it changes the subject (first/last seen or
    # attributes): here, the subjects of the late events, seen again later than before
    before = {e["id"] for e in load.late}
    last_seen: dict[str, datetime] = {}
    for e in load.sim.events():
        if e["id"] not in before:
            sid = e["subject"]["subjectId"]
            last_seen[sid] = max(last_seen.get(sid, ts(e["createdAt"])), ts(e["createdAt"]))
    moved = {
        e["subject"]["subjectId"]
        for e in load.late
        if ts(e["createdAt"]) > last_seen[e["subject"]["subjectId"]]
    }
    assert moved
    subjects = Counter(r[0] for r in load.raw("subjects", "subject_id"))
    assert {s for s, n in subjects.items() if n > 1} == moved


def test_filesystem_newest_load_per_key_reads_every_event_exactly_once(
    filesystem_load: FilesystemLoad,
) -> None:
    load = filesystem_load
    columns = ", ".join(AUDIT_COLUMNS)
    rows = load.latest("audit_logs", "id", columns)
    assert_rows_match(rows, load.sim.events())

    # the metadata leaves of the newest load of each event: the first sync's, plus the late
    # events' own
    leaves = load.latest("audit_log_metadata", "audit_log_id", "audit_log_id, path, value")
    late = {e["id"] for e in load.late}
    assert sorted(r for r in leaves if r[0] not in late) == sorted(
        load.after_first["audit_log_metadata"]
    )
    assert {r[0] for r in leaves if r[0] in late} == {e["id"] for e in load.late if e["metaData"]}

    # the newest subject row holds the first and last time each subject was seen
    expected: dict[str, tuple[datetime, datetime]] = {}
    for e in load.sim.events():
        at = ts(e["createdAt"])
        first, last = expected.get(e["subject"]["subjectId"], (at, at))
        expected[e["subject"]["subjectId"]] = (min(first, at), max(last, at))
    subjects = load.latest("subjects", "subject_id", "subject_id, first_seen_at, last_seen_at")
    actual = {s: (f.astimezone(UTC), la.astimezone(UTC)) for s, f, la in subjects}
    assert len(subjects) == len(actual)
    assert actual == expected


def test_filesystem_report_counts_every_event_after_a_single_sync(tmp_path: Path) -> None:
    """`report` works on the filesystem (through dlt's DuckDB over the Parquet files)."""
    sim = make_simulator(800, seed=5)
    bucket = tmp_path / "bucket"
    target = (
        "--destination", "filesystem", "--dataset", "tfy_report",
        "--pipeline-name", "fs_report", "--pipelines-dir", str(tmp_path / "pipelines"),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp, SimulatorServer(sim) as srv:
        mp.setenv("RUNTIME__LOG_LEVEL", "ERROR")
        mp.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", f"file://{bucket}")
        cli_json("sync", "--host", srv.url, *target, "--no-progress")
        assert run_cli("verify", "--host", srv.url, *target) == 0
        out = tmp_path / "report.html"
        assert report_events(*target, "--out", str(out)) == len(sim.events())
    page = out.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert f"{len(sim.events()):,}" in page


def test_filesystem_verify_is_clean_after_rereads(
    filesystem_load: FilesystemLoad, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = filesystem_load
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(load.bucket))
    assert run_cli("verify", "--host", load.url, *load.target) == 0
    paging = ("--page-size", "100", "--max-offset", "300")  # as the sync paged
    assert run_cli("verify", "--host", load.url, *load.target, "--ids", *paging) == 0


def test_filesystem_report_counts_each_event_once_after_rereads(
    filesystem_load: FilesystemLoad, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    load = filesystem_load
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(load.bucket))
    shown = report_events(*load.target, "--out", str(tmp_path / "report.html"))
    assert shown == len(load.sim.events())


def test_filesystem_syncs_warn_of_no_append_fallback(tmp_path: Path) -> None:
    """The filesystem cannot merge, so every table is written as `append` outright: dlt's
    `Falling back to append` warning (three times a sync) is not the user's to read. A first
    sync and one that re-reads its lookback print no warning and lose no subject."""
    sim = make_simulator(1_200, days=3)
    sim.add_events(
        [make_event(random.Random(i), NOW - timedelta(minutes=2, seconds=i)) for i in range(3)]
    )
    env = {
        "DESTINATION__FILESYSTEM__BUCKET_URL": str(tmp_path / "bucket"),
        "RUNTIME__LOG_LEVEL": "WARNING",
    }
    target = (
        "--destination", "filesystem", "--dataset", "tfy_quiet", "--pipelines-dir",
        str(tmp_path / "pipelines"), "--no-progress", "--chunk-events", "500",
    )  # fmt: skip
    with SimulatorServer(sim) as srv:
        runs = [run_cli_process("sync", "--host", srv.url, *target, env=env) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert "Falling back" not in proc.stderr, proc.stderr
        assert [line for line in proc.stderr.splitlines() if "WARNING" in line] == []
    assert "new events: 1,203" in runs[0].stdout and "chunk(s)" in runs[0].stdout
    assert "new events: 0" in runs[1].stdout
    load = FilesystemLoad(sim, srv.url, tmp_path / "bucket", "tfy_quiet", target)
    assert Counter(r[0] for r in load.raw("audit_logs", "id")) == Counter(sim.ids())
    subjects = {r[0] for r in load.latest("subjects", "subject_id", "subject_id")}
    assert subjects == {e["subject"]["subjectId"] for e in sim.events()}


def test_filesystem_loads_an_event_served_by_two_windows_once(tmp_path: Path) -> None:
    """An append-only destination cannot re-merge a doubled id away, so its reads remember
    every id: an event the service moves to another window right after serving it is
    written once, as first read."""
    sim = make_simulator(2_000)
    original = sim.events()[1_000]
    moved: list[dict[str, Any]] = []
    served = threading.Event()

    def follow_the_reader(s: Simulator, params: dict[str, str]) -> None:
        if params.get("metric") != "list" or moved:
            return
        lo, hi = ts(params["start"]), ts(params["end"])
        if lo <= ts(original["createdAt"]) <= hi:
            served.set()
        elif served.is_set():
            moved.append({**original, "createdAt": format_ts(lo + (hi - lo) / 2)})
            s.add_events(moved)

    sim.on_request = follow_the_reader
    target = (
        "--destination", "filesystem", "--dataset", "tfy_moved",
        "--pipeline-name", "fs_moved", "--pipelines-dir", str(tmp_path / "pipelines"),
    )  # fmt: skip
    load = FilesystemLoad(sim, "", tmp_path / "bucket", "tfy_moved", target)
    with pytest.MonkeyPatch.context() as mp, SimulatorServer(sim) as srv:
        mp.setenv("TFY_API_KEY", API_KEY)
        mp.setenv("RUNTIME__LOG_LEVEL", "ERROR")
        mp.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(load.bucket))
        one_page_per_window = ("--concurrency", "1", "--max-offset", "500", "--page-size", "500")
        cli_json("sync", "--host", srv.url, *target, *one_page_per_window)
    assert moved
    copies = Counter(r[0] for r in load.raw("audit_logs", "id"))
    assert copies == Counter(e["id"] for e in sim.events())
    created = {r[0]: r[1] for r in load.raw("audit_logs", "id, created_at")}
    assert created[original["id"]] == ts(original["createdAt"])
