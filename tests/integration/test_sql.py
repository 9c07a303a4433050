"""`tfy-audit sql`: one read-only query on the dataset, on DuckDB (the file or its published
snapshot), PostgreSQL and the filesystem (Parquet, Delta), with the README's and docs' SQL
examples run through it."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tfy_audit.simulator import SimulatorServer

from tests.conftest import API_KEY, DATASET, REPO, Workspace, make_simulator, run_cli
from tests.integration.test_destinations import postgres, postgres_dataset  # noqa: F401

# one worker syncs the module's dataset once
pytestmark = pytest.mark.xdist_group("sql")


def sql(*args: str) -> tuple[int, str, str]:
    """`tfy-audit sql ...` in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli("sql", *args)
    return code, out.getvalue(), err.getvalue()


def sql_json(*args: str) -> dict[str, Any]:
    code, out, err = sql(*args, "--json")
    document: dict[str, Any] = json.loads(out)
    assert code == 0, (document, err)
    return document


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, list[Any]]]:
    """A DuckDB dataset synced from 1,500 simulated events, and those events."""
    root = tmp_path_factory.mktemp("sqldb")
    ws = Workspace(root / "audit.duckdb", root / "pipelines")
    sim = make_simulator(1_500, seed=61)
    with pytest.MonkeyPatch.context() as env, SimulatorServer(sim) as srv:
        env.setenv("TFY_API_KEY", API_KEY)
        env.setenv("HOME", str(root))
        assert run_cli(*ws.sync_args(srv.url)) == 0
        # verify_runs, which the docs' examples read too
        verify = ["verify", "--host", srv.url, "--db", str(ws.db)]
        assert run_cli(*verify, "--pipelines-dir", str(ws.pipelines_dir)) == 0
    yield ws, sim.events()


def _deleted(events: list[Any]) -> list[tuple[str, str]]:
    return sorted((e["id"], e["action"]) for e in events if e["action"].startswith("DELETE_"))


def test_select_by_plain_names_in_each_format(synced: tuple[Workspace, list[Any]]) -> None:
    ws, events = synced
    query = "select id, action from audit_logs where action like 'DELETE_%' order by id"
    document = sql_json("--db", str(ws.db), query)
    deleted = _deleted(events)
    assert len(deleted) > 5
    assert document["columns"] == ["id", "action"]
    assert [tuple(r) for r in document["rows"]] == deleted
    assert document["truncated"] is False and document["source"] == str(ws.db)

    code, out, err = sql("--db", str(ws.db), "--format", "csv", query)
    assert code == 0 and err == ""
    assert out == "id,action\n" + "".join(f"{i},{a}\n" for i, a in deleted)

    code, out, err = sql("--db", str(ws.db), "--format", "json", query)
    assert code == 0 and err == ""
    assert json.loads(out) == [{"id": i, "action": a} for i, a in deleted]

    # the aligned table: a header, a rule, one line a row; numbers to the right
    code, out, err = sql(
        "--db", str(ws.db),
        "select 'a' as name, 7 as n, null as gone union all select 'longer', 1234, null "
        "order by n",
    )  # fmt: skip
    assert code == 0 and err == ""
    assert out == (
        "name       n  gone\n------  ----  ----\na          7  NULL\nlonger  1234  NULL\n"
    )

    # views by their plain names; a file holding the query
    (n,) = sql_json("--db", str(ws.db), "select count(*) from deletions")["rows"][0]
    assert n == len(deleted)
    query_file = ws.db.parent / "q.sql"
    query_file.write_text("-- deletions per action\n" + query + ";\n", encoding="utf-8")
    document = sql_json("--db", str(ws.db), "--file", str(query_file))
    assert [tuple(r) for r in document["rows"]] == deleted


def test_a_row_limit_by_default_and_said_when_rows_were_cut(
    synced: tuple[Workspace, list[Any]],
) -> None:
    ws, events = synced
    ids = sorted(e["id"] for e in events)
    query = "select id from audit_logs order by id"
    code, out, err = sql("--db", str(ws.db), "--format", "csv", query)
    assert code == 0
    assert out.splitlines() == ["id", *ids[:1000]]
    assert err.strip() == (
        "tfy-audit: showing the first 1,000 rows; --limit N shows more, --limit 0 all"
    )
    code, out, err = sql("--db", str(ws.db), "--format", "csv", "--limit", "0", query)
    assert code == 0 and err == ""
    assert out.splitlines() == ["id", *ids]
    document = sql_json("--db", str(ws.db), "--limit", "3", query)
    assert document["rows"] == [[i] for i in ids[:3]]
    assert document["truncated"] is True and document["row_count"] == 3


@pytest.mark.parametrize(
    "query",
    [
        "delete from audit_logs",
        "update audit_logs set message = 'x'",
        "insert into audit_logs (id) values ('x')",
        "drop table audit_logs",
        "create table stolen as select * from audit_logs",
        "select 1; delete from audit_logs",
        "attach '/tmp/other.duckdb' as other",
        "copy audit_logs to '/tmp/out.csv'",
        "install httpfs",
        "set schema = 'main'",
        "checkpoint",
        "   ",
    ],
)
def test_a_query_that_is_not_one_read_is_refused(
    synced: tuple[Workspace, list[Any]], query: str
) -> None:
    ws, events = synced
    code, out, err = sql("--db", str(ws.db), query)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("tfy-audit: error: "), line
    assert "Traceback" not in err
    assert ws.ids() == {e["id"] for e in events}


def test_files_outside_the_database_are_not_read(synced: tuple[Workspace, list[Any]]) -> None:
    ws, _ = synced
    code, out, err = sql("--db", str(ws.db), f"select * from read_csv('{REPO / 'README.md'}')")
    assert code == 2 and out == ""
    assert err.startswith("tfy-audit: error: the query failed: Permission Error"), err


def test_missing_database_and_dataset_are_one_line(
    synced: tuple[Workspace, list[Any]], tmp_path: Path
) -> None:
    ws, _ = synced
    code, _, err = sql("--db", str(tmp_path / "none.duckdb"), "select 1")
    assert code == 2
    assert err == (
        f"tfy-audit: error: {tmp_path / 'none.duckdb'} does not exist; run `tfy-audit sync` "
        "first, or pass the --db it wrote\n"
    )
    code, _, err = sql("--db", str(ws.db), "--dataset", "other", "select 1")
    assert code == 2
    assert err == (
        f"tfy-audit: error: {ws.db} holds no dataset 'other'; pass the --dataset of your syncs\n"
    )
    code, _, err = sql("--db", str(ws.db))
    assert code == 2 and "pass one query" in err


def _hold_for_writing(db: Path) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open for writing, as a running sync has it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"  # bounded by the process's own start
    return holder


def test_reads_the_published_snapshot_when_a_pointer_names_one(
    synced: tuple[Workspace, list[Any]], tmp_path: Path
) -> None:
    ws, events = synced
    db = tmp_path / "tfy_audit.duckdb"
    shutil.copy(ws.db, db)
    snapshot = tmp_path / "snapshots" / "tfy_audit.2026-12-01.duckdb"
    snapshot.parent.mkdir()
    shutil.copy(ws.db, snapshot)
    # the live file moves on: it holds one event the snapshot has not
    con = duckdb.connect(str(db))
    con.execute(
        f"insert into {DATASET}.audit_logs (id, action) values ('only-in-the-live-file', 'X')"
    )
    con.close()
    everything = sorted(e["id"] for e in events)
    query = "select id from audit_logs order by id"

    pointer = tmp_path / ".tfy_audit.duckdb.published.json"
    published_at = datetime(2026, 12, 1, tzinfo=UTC).isoformat()
    pointer.write_text(json.dumps({"path": str(snapshot), "published_at": published_at}))
    holder = _hold_for_writing(db)  # a sync is writing the live file
    try:
        document = sql_json("--db", str(db), "--limit", "0", query)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert document["rows"] == [[i] for i in everything]
    assert document["source"] == f"{snapshot} (published snapshot)"

    # a pointer to a snapshot that is gone: the file itself, read-only
    snapshot.unlink()
    document = sql_json("--db", str(db), "--limit", "0", query)
    assert document["rows"] == [[i] for i in sorted([*everything, "only-in-the-live-file"])]
    assert document["source"] == str(db)


def test_without_a_snapshot_a_file_being_written_is_one_line(
    synced: tuple[Workspace, list[Any]], tmp_path: Path
) -> None:
    ws, _ = synced
    db = tmp_path / "tfy_audit.duckdb"
    shutil.copy(ws.db, db)
    holder = _hold_for_writing(db)
    try:
        code, out, err = sql("--db", str(db), "select count(*) from audit_logs")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"tfy-audit: error: the DuckDB file {db} is open in another process")


@pytest.mark.postgres
def test_postgres_reads_in_a_read_only_transaction(
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    sim = make_simulator(600, seed=67)
    target = (
        "--destination", "postgres", "--dataset", postgres_dataset,
        "--pipeline-name", f"pg_{postgres_dataset}", "--pipelines-dir", str(tmp_path / "p"),
    )  # fmt: skip
    with SimulatorServer(sim) as srv:
        assert run_cli("sync", "--host", srv.url, *target, "--no-progress") == 0
    query = "select id, action from audit_logs where action like 'DELETE_%' order by id"
    document = sql_json(*target, query)
    assert [tuple(r) for r in document["rows"]] == _deleted(sim.events())
    (n,) = sql_json(*target, "select count(*) from deletions")["rows"][0]
    assert n == len(_deleted(sim.events()))
    # a write DuckDB's parser takes for a read is refused by the transaction
    with postgres() as cur:
        cur.execute(f'CREATE SEQUENCE "{postgres_dataset}".probe')
    code, out, err = sql(*target, "select nextval('probe')")
    assert code == 2 and out == ""
    assert err == (
        "tfy-audit: error: the query failed: cannot execute nextval() in a read-only transaction\n"
    )
    with postgres() as cur:
        cur.execute(f'SELECT is_called FROM "{postgres_dataset}".probe')
        assert cur.fetchone() == (False,)


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(tmp_path / "lake"))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")
    return tmp_path


@pytest.mark.parametrize("table_format", ["parquet", "delta"])
def test_filesystem_datasets_answer_like_a_warehouse(lake_env: Path, table_format: str) -> None:
    if table_format == "delta":
        pytest.importorskip("deltalake")
    target = (
        "--destination", "filesystem", "--pipeline-name", "fs_sql",
        "--pipelines-dir", str(lake_env / "pipelines"),
    )  # fmt: skip
    fmt = ("--table-format", "delta") if table_format == "delta" else ()
    sim = make_simulator(500, seed=71)
    with SimulatorServer(sim) as srv:
        assert run_cli("sync", "--host", srv.url, *target, *fmt, "--no-progress") == 0
    query = "select id, action from audit_logs where action like 'DELETE_%' order by id"
    document = sql_json(*target, query)
    assert [tuple(r) for r in document["rows"]] == _deleted(sim.events())
    assert document["source"] == f"filesystem dataset {DATASET}"
    (n,) = sql_json(*target, f"select count(*) from {DATASET}.deletions")["rows"][0]
    assert n == len(_deleted(sim.events()))
    runs = sql_json(*target, "select status, audit_log_rows from sync_runs")["rows"]
    assert runs == [["ok", 500]]
    assert not (Path.home() / ".duckdb").exists()  # no DuckDB extension was downloaded
    if table_format == "parquet":
        # a query that names only tables reads only those: a damaged table it does not name
        # is not read
        for path in (lake_env / "lake" / DATASET / "audit_log_metadata").glob("*.parquet"):
            path.write_bytes(b"not parquet")
        (n,) = sql_json(*target, "select count(*) from audit_logs")["rows"][0]
        assert n == 500
        code, out, err = sql(*target, "select count(*) from audit_log_metadata")
        assert code == 1 and out == ""
        assert err.startswith(
            f"tfy-audit: error: cannot read the Parquet files of {DATASET}.audit_log_metadata"
        ), err


# -- every SQL example of the README and docs/ ----------------------------------------------

SKIP_MARKER = "-- tfy-audit sql: skip"


def sql_examples() -> list[tuple[str, str]]:
    """(where, statement) of each statement of each ```sql block in README.md and docs/*.md,
    but the blocks marked `-- tfy-audit sql: skip` (SQL for another engine)."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^```sql\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
            block = match.group(1)
            if SKIP_MARKER in block:
                continue
            line = text[: match.start()].count("\n") + 2
            where = f"{path.relative_to(REPO)}:{line}"
            try:
                statements = [s.query.strip() for s in duckdb.connect().extract_statements(block)]
            except duckdb.Error:  # run whole, to fail in the test that runs it
                statements = [block]
            found.extend((where, statement) for statement in statements)
    return found


def test_the_docs_hold_sql_examples() -> None:
    wheres = {where.split(":")[0] for where, _ in sql_examples()}
    assert {"README.md", "docs/tables-and-views.md"} <= wheres
    assert len(sql_examples()) >= 10


@pytest.mark.parametrize(
    "where,statement",
    [pytest.param(w, s, id=f"{w}#{i}") for i, (w, s) in enumerate(sql_examples())],
)
def test_each_sql_example_runs(
    synced: tuple[Workspace, list[Any]], where: str, statement: str
) -> None:
    ws, _ = synced
    code, out, err = sql("--db", str(ws.db), "--format", "csv", statement)
    assert code == 0, f"{where}: {err}"
    assert "error" not in err, f"{where}: {err}"
    assert out.splitlines(), where  # at least its header
