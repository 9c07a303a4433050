"""One odd event never stops a sync: deep nesting, bytes that are not UTF-8, NUL on PostgreSQL,
an event without a usable createdAt. Each is loaded, and recorded in `event_anomalies`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._service.leaves import MAX_PATH_DEPTH, MAX_TEXT_DEPTH
from tfy_audit.simulator import Simulator, SimulatorServer, generate_history

from tests.conftest import (
    AUDIT_COLUMNS,
    DATASET,
    NOW,
    SERVICE_CLOCK_AHEAD,
    Workspace,
    expected_row,
    make_simulator,
    run_cli,
)
from tests.integration.test_destinations import (  # noqa: F401
    cli_output,
    postgres,
    postgres_dataset,
)

AT = NOW - timedelta(hours=5)
STAMP = AT.strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()


def raw_event(event_id: str, fields: bytes, stamp: bytes = b'"%b"' % STAMP) -> bytes:
    return b'{"id":"%b","createdAt":%b,"updatedAt":"%b","action":"APPLY",%b}' % (
        event_id.encode(),
        stamp,
        STAMP,
        fields,
    )


def nested(depth: int) -> bytes:
    return b'{"d":' * depth + b'"bottom"' + b"}" * depth


def anomalies(ws: Workspace) -> set[tuple[Any, ...]]:
    return set(
        ws.query(f"select kind, action, event_id, field_path from {DATASET}.event_anomalies")
    )


def assert_loaded_exactly(ws: Workspace, events: list[dict[str, Any]], odd: str) -> None:
    """Every id of `events` and `odd` loaded once; each of `events` field by field."""
    assert ws.ids() == {e["id"] for e in events} | {odd}
    ws.assert_unique()
    rows = ws.query(
        f"select {', '.join(AUDIT_COLUMNS)} from {DATASET}.audit_logs where id <> ?", [odd]
    )
    actual = {}
    for row in rows:
        values = list(row)
        for column in ("created_at", "updated_at"):
            at = AUDIT_COLUMNS.index(column)
            values[at] = values[at].astimezone(UTC)
        values[-1] = None if values[-1] is None else json.loads(values[-1])
        actual[row[0]] = tuple(values)
    assert actual == {e["id"]: expected_row(e) for e in events}


def sync(sim: Simulator, ws: Workspace, *extra: str) -> int:
    with SimulatorServer(sim) as srv:
        return run_cli(*ws.sync_args(srv.url, *extra))


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_metadata_nested_past_any_parser_loads_with_a_record(
    depth: int, workspace: Workspace
) -> None:
    sim = make_simulator(200, days=1)
    plain = sim.events()
    sim.add_raw_event("deep", AT, raw_event("deep", b'"metaData":{"a":1,"t":%b}' % nested(depth)))

    assert sync(sim, workspace) == 0

    assert_loaded_exactly(workspace, plain, "deep")
    [(meta_data,)] = workspace.query(
        f"select meta_data from {DATASET}.audit_logs where id = 'deep'"
    )
    # the document is kept whole: verbatim down to MAX_TEXT_DEPTH levels, then JSON text
    if depth < MAX_TEXT_DEPTH:
        assert meta_data == '{"a":1,"t":' + nested(depth).decode() + "}"
    else:
        kept = MAX_TEXT_DEPTH - 1  # "t"'s objects; with metaData's, the limit
        cut = depth - kept
        inner = '{"d":' * cut + '"bottom"' + "}" * cut
        assert meta_data == ('{"a":1,"t":' + '{"d":' * kept + json.dumps(inner) + "}" * kept + "}")
    leaves = workspace.query(
        f"select path, value, value_type from {DATASET}.audit_log_metadata "
        "where audit_log_id = 'deep' order by path"
    )
    rest = depth - (MAX_PATH_DEPTH - 1)
    deep_path = "$.t" + ".d" * (MAX_PATH_DEPTH - 1)
    assert leaves == [
        ("$.a", "1", "integer"),
        (deep_path, '{"d":' * rest + '"bottom"' + "}" * rest, "object"),
    ]
    assert anomalies(workspace) == {
        ("deep_nesting", "kept_as_json_text", "deep", "$.metaData" + deep_path[1:])
    }


def test_a_byte_that_is_not_utf8_costs_one_field_of_one_event(workspace: Workspace) -> None:
    sim = make_simulator(200, days=1)
    plain = sim.events()
    sim.add_raw_event(
        "bad",
        AT,
        raw_event(
            "bad",
            b'"message":"caf\xe9 au lait","resourceName":"fine",'
            b'"subject":{"subjectId":"s-bad","subjectDisplayName":"Zo\xeb"},'
            b'"metaData":{"k":"v\xff"}',
        ),
    )

    assert sync(sim, workspace) == 0

    assert_loaded_exactly(workspace, plain, "bad")
    assert workspace.query(
        "select message, resource_name, subject__subject_display_name, meta_data "
        f"from {DATASET}.audit_logs where id = 'bad'"
    ) == [("caf\ufffd au lait", "fine", "Zo\ufffd", '{"k":"v\ufffd"}')]
    assert workspace.query(
        f"select path, value from {DATASET}.audit_log_metadata where audit_log_id = 'bad'"
    ) == [("$.k", '"v\ufffd"')]
    assert workspace.query(
        f"select subject_display_name from {DATASET}.subjects where subject_id = 's-bad'"
    ) == [("Zo\ufffd",)]
    assert anomalies(workspace) == {
        ("invalid_utf8", "replaced", "bad", "$.message"),
        ("invalid_utf8", "replaced", "bad", "$.subject.subjectDisplayName"),
        ("invalid_utf8", "replaced", "bad", "$.metaData.k"),
    }
    # a second run reads the event again (the lookback) and merges its records, not adds
    assert sync(sim, workspace) == 0
    assert workspace.query(f"select count(*) from {DATASET}.event_anomalies") == [(3,)]


# -- NUL ---------------------------------------------------------------------------------------


def nul_event(sim: Simulator) -> dict[str, Any]:
    """An event with U+0000 in a text field, the subject, metaData (value and key) and an
    unknown field; written by the simulator's encoder (as `\\u0000`, as JSON has it)."""
    event = dict(sim.events()[0])
    event.update(
        id="nul",
        message="m\0m",
        metaData={"k": "v\0v", "a\0b": 1, "quoted": "\\u0000 stays"},
        subject={"subjectId": "s-nul", "subjectType": "user", "subjectDisplayName": "Zo\0e"},
        newField="x\0",
    )
    return event


NUL_FIELDS = {
    "$.message",
    "$.subject.subjectDisplayName",
    "$.metaData.k",
    '$.metaData["a\u2400b"]',
    "$",
}


@pytest.mark.postgres
def test_postgres_gets_nul_as_a_visible_substitute_with_a_record(
    postgres_dataset: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    sim = make_simulator(200, days=1)
    sim.add_events([nul_event(sim)])
    ds = postgres_dataset
    with SimulatorServer(sim) as srv:
        code = run_cli(
            "sync", "--host", srv.url, "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(tmp_path), "--no-progress",
        )  # fmt: skip
    assert code == 0
    with postgres() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT id) FROM "{ds}".audit_logs')
        assert cur.fetchone() == (201, 201)
        cur.execute(
            "SELECT message, subject__subject_display_name, meta_data::text, extra_fields::text "
            f'FROM "{ds}".audit_logs WHERE id = %s',
            ["nul"],
        )
        message, name, meta_data, extra = cur.fetchone()
        assert (message, name) == ("m\u2400m", "Zo\u2400e")
        assert json.loads(meta_data) == {
            "k": "v\u2400v",
            "a\u2400b": 1,
            "quoted": "\\u0000 stays",
        }
        assert json.loads(extra) == {"newField": "x\u2400"}
        cur.execute(
            f'SELECT path, value FROM "{ds}".audit_log_metadata WHERE audit_log_id = %s',
            ["nul"],
        )
        assert set(cur.fetchall()) == {
            ("$.k", '"v\u2400v"'),
            ('$["a\u2400b"]', "1"),
            ("$.quoted", '"\\\\u0000 stays"'),
        }
        cur.execute(
            f'SELECT subject_display_name FROM "{ds}".subjects WHERE subject_id = %s', ["s-nul"]
        )
        assert cur.fetchall() == [("Zo\u2400e",)]
        cur.execute(f'SELECT kind, action, event_id, field_path FROM "{ds}".event_anomalies')
        assert set(cur.fetchall()) == {
            ("nul_character", "replaced", "nul", path) for path in NUL_FIELDS
        }


def test_duckdb_keeps_nul_exactly_and_records_nothing(workspace: Workspace) -> None:
    sim = make_simulator(200, days=1)
    sim.add_events([nul_event(sim)])
    assert sync(sim, workspace) == 0
    assert workspace.query(
        "select message, subject__subject_display_name, meta_data "
        f"from {DATASET}.audit_logs where id = 'nul'"
    ) == [("m\0m", "Zo\0e", '{"k":"v\\u0000v","a\\u0000b":1,"quoted":"\\\\u0000 stays"}')]
    assert workspace.query(
        "select count(*) from information_schema.tables where table_name = 'event_anomalies'"
    ) == [(0,)]


# -- no usable createdAt -----------------------------------------------------------------------


def test_an_event_without_a_usable_date_is_loaded_once_in_a_run_of_four_chunks(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    # the service's clock ahead: a run reads the events added just before it starts
    sim = make_simulator(3_000, days=10, clock_offset_seconds=SERVICE_CLOCK_AHEAD)
    dated = sim.events()
    # a service that cannot place it returns it to every query, so to every window and chunk
    sim.add_raw_event("undated", None, raw_event("undated", b'"message":"m"', b'"not a time"'))
    args = ("--chunk-events", "1000", "--max-offset", "1000", "--page-size", "200")

    assert sync(sim, workspace, *args) == 0
    out = capsys.readouterr().out
    # four chunks or five: how the planned windows (23 here) fall into chunks of about 1,000
    # events depends on the time of day the history ends at; every chunk's query returns it
    chunks = re.search(r"(\d+) chunk\(s\)", out)
    assert chunks is not None and int(chunks.group(1)) >= 4, out
    # new, not "re-read: already loaded": a first sync
    assert "  new events: 3,001" in out.splitlines()

    assert_loaded_exactly(workspace, dated, "undated")
    assert workspace.query(f"select count(*), count(distinct id) from {DATASET}.audit_logs") == [
        (3_001, 3_001)
    ]
    assert workspace.query(
        f"select created_at, message, extra_fields from {DATASET}.audit_logs where id = 'undated'"
    ) == [(None, "m", '{"createdAt":"not a time"}')]
    assert anomalies(workspace) == {("no_created_at", "loaded_once", "undated", "$.createdAt")}

    # later runs neither add it again nor its record: one that merges (the lookback), and one
    # that appends (no lookback: nothing it reads was loaded before, but this event)
    previous_end = NOW  # the new events come after the previous sync (the 10m lookback: near)
    for lookback, seed in (("10m", 5), ("0s", 6)):
        now = datetime.now(UTC)
        span = (now - previous_end).total_seconds() - 0.01
        new = generate_history(
            50, days=span / 86_400, seed=seed, end=now - timedelta(seconds=0.005)
        )
        sim.add_events(new)
        dated += new
        assert sync(sim, workspace, *args, "--lookback", lookback) == 0
        previous_end = datetime.now(UTC)
        assert_loaded_exactly(workspace, dated, "undated")
    assert workspace.query(f"select count(*) from {DATASET}.audit_logs") == [(3_101,)]
    assert workspace.query(f"select count(*) from {DATASET}.event_anomalies") == [(1,)]


@pytest.mark.postgres
def test_postgres_loads_an_event_without_a_usable_date_once_across_syncs(
    postgres_dataset: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    # the second sync appends (no lookback: nothing it reads was loaded before, but this
    # event, which the service returns to every query): the undated id is read back from
    # PostgreSQL and skipped, so neither its row nor its record is added twice
    sim = make_simulator(100, days=1, clock_offset_seconds=SERVICE_CLOCK_AHEAD)
    dated = sim.events()
    sim.add_raw_event("undated", None, raw_event("undated", b'"message":"m"', b'"not a time"'))
    ds = postgres_dataset
    args = (
        "--destination", "postgres", "--dataset", ds, "--pipeline-name", f"pg_{ds}",
        "--pipelines-dir", str(tmp_path), "--no-progress", "--lookback", "0s",
    )  # fmt: skip
    with SimulatorServer(sim) as srv:
        assert run_cli("sync", "--host", srv.url, *args) == 0
        assert run_cli("sync", "--host", srv.url, *args) == 0
    with postgres() as cur:
        cur.execute(f'SELECT id FROM "{ds}".audit_logs')
        ids = [row[0] for row in cur.fetchall()]
        assert sorted(ids) == sorted([e["id"] for e in dated] + ["undated"])
        cur.execute(f"SELECT created_at, message FROM \"{ds}\".audit_logs WHERE id = 'undated'")
        assert cur.fetchall() == [(None, "m")]
        cur.execute(f'SELECT kind, action, event_id, field_path FROM "{ds}".event_anomalies')
        assert cur.fetchall() == [("no_created_at", "loaded_once", "undated", "$.createdAt")]


# -- where users see them ----------------------------------------------------------------------


def test_the_summary_and_status_show_the_records(workspace: Workspace, tmp_path: Path) -> None:
    sim = make_simulator(200, days=1)
    sim.add_raw_event("bad", AT, raw_event("bad", b'"message":"caf\xe9","resourceName":"\xff"'))
    sim.add_raw_event("deep", AT, raw_event("deep", b'"metaData":%b' % nested(200)))
    with SimulatorServer(sim) as srv:
        code, out = cli_output(*workspace.sync_args(srv.url))
        assert code == 0
        assert (
            "  anomalies: 3 (invalid_utf8 2, deep_nesting 1) — see table event_anomalies"
            in out.splitlines()
        )
        # the same run as JSON, into a workspace of its own
        other = Workspace(tmp_path / "other.duckdb", tmp_path / "other")
        code, out = cli_output(*other.sync_args(srv.url, "--json"))
    assert code == 0
    assert json.loads(out)["anomalies"] == {"invalid_utf8": 2, "deep_nesting": 1}
    assert workspace.query(f"select count(*) from {DATASET}.event_anomalies") == [(3,)]

    code, out = cli_output("status", "--db", str(workspace.db), "--json")
    assert code == 0
    document = json.loads(out)["anomalies"]
    assert document["total"] == 3
    assert document["by_kind"] == {"invalid_utf8": 2, "deep_nesting": 1}
    assert {(r["kind"], r["event_id"], r["field_path"]) for r in document["latest"]} == {
        ("invalid_utf8", "bad", "$.message"),
        ("invalid_utf8", "bad", "$.resourceName"),
        ("deep_nesting", "deep", "$.metaData" + ".d" * MAX_PATH_DEPTH),
    }
    code, out = cli_output("status", "--db", str(workspace.db))
    assert code == 0
    lines = out.splitlines()
    at = lines.index("anomalies: 3 (invalid_utf8 2, deep_nesting 1) — see table event_anomalies")
    latest = sorted(line.split(" ", 3)[3] for line in lines[at + 1 : at + 4])
    assert latest == sorted(
        [
            "invalid_utf8 replaced: event bad at $.message",
            "invalid_utf8 replaced: event bad at $.resourceName",
            # a long path is cut to one short line
            "deep_nesting kept_as_json_text: event deep at "
            + ("$.metaData" + ".d" * MAX_PATH_DEPTH)[:119]
            + "…",
        ]
    )


def test_the_report_lists_the_records_escaped(workspace: Workspace, tmp_path: Path) -> None:
    from tests.integration.test_report import visible_text

    sim = make_simulator(50, days=1)
    hostile = "<script>alert(1)</script>"
    sim.add_raw_event(
        hostile,
        AT,
        raw_event(hostile, b'"message":"\xe9","metaData":{"%b":"\xff"}' % hostile.encode()),
    )
    assert sync(sim, workspace) == 0
    out = tmp_path / "report.html"
    code, _ = cli_output("report", "--db", str(workspace.db), "--out", str(out))
    assert code == 0
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "Content-Security-Policy" in page
    text = visible_text(page)
    assert "Odd events 2 (invalid_utf8 2)" in text
    section = text[text.index("Odd events 2") :]
    assert "Latest records, newest first all 2" in section
    assert f"invalid_ utf8 replaced {hostile} $.message" in section
    assert f'invalid_ utf8 replaced {hostile} $.metaData["{hostile}"]' in section


@pytest.mark.postgres
def test_postgres_loads_deep_nesting_and_bad_bytes(
    postgres_dataset: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    # meta_data is jsonb there, whose parser recurses per level: it gets MAX_TEXT_DEPTH levels
    depth = 100_000
    sim = make_simulator(100, days=1)
    sim.add_raw_event("deep", AT, raw_event("deep", b'"metaData":{"a":1,"t":%b}' % nested(depth)))
    sim.add_raw_event("bad", AT, raw_event("bad", b'"message":"caf\xe9","metaData":{"k":"\xff"}'))
    ds = postgres_dataset
    with SimulatorServer(sim) as srv:
        code = run_cli(
            "sync", "--host", srv.url, "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(tmp_path), "--no-progress",
        )  # fmt: skip
    assert code == 0
    kept = MAX_TEXT_DEPTH - 1
    cut = depth - kept
    inner = '{"d":' * cut + '"bottom"' + "}" * cut
    expected = '{"a":1,"t":' + '{"d":' * kept + json.dumps(inner) + "}" * kept + "}"
    with postgres() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT id) FROM "{ds}".audit_logs')
        assert cur.fetchone() == (102, 102)
        cur.execute(
            f"SELECT meta_data = %s::jsonb FROM \"{ds}\".audit_logs WHERE id = 'deep'", [expected]
        )
        assert cur.fetchall() == [(True,)]
        cur.execute(f"SELECT message, meta_data::text FROM \"{ds}\".audit_logs WHERE id = 'bad'")
        assert cur.fetchall() == [("caf\ufffd", '{"k": "\ufffd"}')]
        cur.execute(f'SELECT kind, event_id, field_path FROM "{ds}".event_anomalies')
        assert set(cur.fetchall()) == {
            ("deep_nesting", "deep", "$.metaData.t" + ".d" * (MAX_PATH_DEPTH - 1)),
            ("invalid_utf8", "bad", "$.message"),
            ("invalid_utf8", "bad", "$.metaData.k"),
        }
