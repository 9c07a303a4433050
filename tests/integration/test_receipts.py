"""Daily receipts: `sync --receipts-dir` issues a signed, chained receipt per completed UTC day,
and `verify --receipts` (offline) passes an untouched warehouse and names the day and the event
ids of each tamper case, on DuckDB (one synced warehouse, copied per case) and PostgreSQL (one
synced dataset, every case at once on its own day); late events re-issue a day in the chain."""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tfy_audit._core.options import DestinationOptions, SyncOptions
from tfy_audit._engine.sync import sync
from tfy_audit._engine.verify_receipts import (
    CHAIN_BROKEN,
    EVENTS_ADDED,
    EVENTS_CHANGED,
    EVENTS_DELETED,
    LEAVES_CHANGED,
    RECEIPT_EDITED,
    RECEIPT_MISSING,
    SIGNATURE_INVALID,
    TABLE_DIFFERS,
    Finding,
    verify_receipts,
)
from tfy_audit._receipts.signing import KEY_VARIABLE, PUBLIC_KEY_VARIABLE
from tfy_audit._warehouse.destination import reading_pipeline
from tfy_audit.simulator import Simulator, make_event, odd_events

from tests.conftest import API_KEY, DATASET, NOW, isolate_env, make_simulator, run_cli_captured
from tests.integration.test_destinations import (
    postgres,
    postgres_dataset,  # noqa: F401 (a fixture)
)

pytestmark = pytest.mark.xdist_group("test_receipts")

SEED = base64.b64encode(bytes(range(32))).decode()
# the public key of SEED (Ed25519), as sync prints it and verify is pinned to
PUBLIC_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
HOST = "http://127.0.0.1:9"  # never reached: the simulator is served in-process


@dataclass
class Synced:
    """A warehouse synced with receipts, and what the simulator holds per UTC day."""

    target: DestinationOptions
    receipts: Path
    by_day: dict[date, list[dict[str, Any]]]

    def copy(self, root: Path) -> Synced:
        """The DuckDB file and the receipts, copied under `root` (a fresh working dir)."""
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.target.db, root / "audit.duckdb")
        shutil.copytree(self.receipts, root / "receipts")
        target = DestinationOptions(db=str(root / "audit.duckdb"), pipelines_dir=str(root / "p"))
        return Synced(target, root / "receipts", self.by_day)

    def verify(self) -> list[Finding]:
        pipeline = reading_pipeline(self.target)
        pipeline.sync_destination()
        return verify_receipts(pipeline, str(self.receipts)).findings

    def sql(self, statement: str, *params: Any) -> None:
        con = duckdb.connect(self.target.db)
        try:
            con.execute(statement.replace("{ds}", DATASET), list(params))
        finally:
            con.close()


def _simulator() -> Simulator:
    # four days back from now: three completed days whatever the hour (with three, the first
    # was only the part of a day after this hour, and late in the day it had no event, so the
    # tests that tamper with the second or third busiest day found none)
    sim = make_simulator(300, days=4, seed=5)
    # unicode, big integers, deep and odd metaData, on a completed day
    sim.add_events(odd_events(NOW - timedelta(days=2)))
    return sim


def _by_day(sim: Simulator) -> dict[date, list[dict[str, Any]]]:
    today = datetime.now(UTC).date()
    days: dict[date, list[dict[str, Any]]] = {}
    for event in sim.events():
        day = datetime.fromisoformat(event["createdAt"].replace("Z", "+00:00")).date()
        if day < today:
            days.setdefault(day, []).append(event)
    return days


def _sync(sim: Simulator, target: DestinationOptions, receipts: Path, **extra: Any) -> Any:
    options = SyncOptions(
        target=target, host=HOST, api_key=API_KEY, receipts_dir=str(receipts), **extra
    )
    return sync(options, transport=sim.transport())


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    root = tmp_path_factory.mktemp("receipts")
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, tmp_path_factory)
        mp.setenv(KEY_VARIABLE, SEED)
        sim = _simulator()
        target = DestinationOptions(db=str(root / "audit.duckdb"), pipelines_dir=str(root / "p"))
        summary = _sync(sim, target, root / "receipts")
        yield Synced(target, root / "receipts", _by_day(sim))
    assert summary.receipts is not None
    assert summary.receipts["public_key"] == PUBLIC_KEY


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PUBLIC_KEY_VARIABLE, PUBLIC_KEY)


def _files(receipts: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(receipts.glob("*.json"))}


def test_every_completed_day_has_one_signed_receipt_of_its_events(synced: Synced) -> None:
    files = _files(synced.receipts)
    days = sorted(synced.by_day)
    assert list(files) == [f"{d.isoformat()}.r0.json" for d in days]
    previous = None
    for index, (day, receipt) in enumerate(zip(days, files.values(), strict=True)):
        ids = {e["id"] for e in synced.by_day[day]}
        assert {i for i, _ in receipt["events"]} == ids
        assert receipt["count"] == receipt["service_count"] == len(ids)
        assert (receipt["index"], receipt["seq"], receipt["prev"]) == (index, 0, previous)
        assert receipt["supersedes"] is None and receipt["public_key"] == PUBLIC_KEY
        previous = receipt["hash"]
    rows = duckdb.connect(synced.target.db, read_only=True).execute(
        f"select day, seq, event_count, receipt_hash from {DATASET}.daily_receipts order by 1"
    )
    assert rows.fetchall() == [
        (date.fromisoformat(r["day"]), 0, r["count"], r["hash"]) for r in files.values()
    ]


def test_an_untouched_warehouse_passes(synced: Synced) -> None:
    assert synced.copy(Path(synced.target.db).parent / "untouched").verify() == []


def _a_day(synced: Synced, n: int = 0) -> tuple[date, list[dict[str, Any]]]:
    """The n-th busiest completed day and its events."""
    day = sorted(synced.by_day, key=lambda d: -len(synced.by_day[d]))[n]
    return day, synced.by_day[day]


def test_a_deleted_row_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    day, events = _a_day(ws)
    victim = events[3]["id"]
    ws.sql("delete from {ds}.audit_logs where id = ?", victim)
    assert [(f.kind, f.day, f.ids) for f in ws.verify()] == [(EVENTS_DELETED, day, (victim,))]


def test_a_changed_metadata_leaf_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    day, events = _a_day(ws)
    event = next(e for e in events if e.get("metaData"))
    (path,) = duckdb.connect(ws.target.db, read_only=True).execute(
        f"select min(path) from {DATASET}.audit_log_metadata where audit_log_id = ?",
        [event["id"]],
    ).fetchone() or (None,)
    ws.sql(
        "update {ds}.audit_log_metadata set value = '\"forged\"' "
        "where audit_log_id = ? and path = ?",
        event["id"],
        path,
    )
    assert [(f.kind, f.day, f.ids) for f in ws.verify()] == [
        (LEAVES_CHANGED, day, (f"{event['id']} {path}",))
    ]


def test_a_changed_meta_data_column_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    day, events = _a_day(ws)
    event = next(e for e in events if not e.get("metaData"))
    ws.sql("update {ds}.audit_logs set meta_data = '{\"a\": 1}' where id = ?", event["id"])
    findings = [(f.kind, f.day, f.ids) for f in ws.verify()]
    assert findings == [
        (EVENTS_CHANGED, day, (event["id"],)),
        (LEAVES_CHANGED, day, (f"{event['id']} $.a",)),
    ]


def test_a_forged_event_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    day, events = _a_day(ws, 1)
    ws.sql(
        "insert into {ds}.audit_logs select * replace ('forged-1' as id) "
        "from {ds}.audit_logs where id = ?",
        events[0]["id"],
    )
    # a careful forger gives it metaData leaves too
    ws.sql(
        "insert into {ds}.audit_log_metadata select * replace ('forged-1' as audit_log_id) "
        "from {ds}.audit_log_metadata where audit_log_id = ?",
        events[0]["id"],
    )
    assert [(f.kind, f.day, f.ids) for f in ws.verify()] == [(EVENTS_ADDED, day, ("forged-1",))]


def test_a_dropped_day_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    day, events = _a_day(ws, 2)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ws.sql(
        "delete from {ds}.audit_logs where created_at >= ? and created_at < ?",
        start,
        start + timedelta(days=1),
    )
    assert [(f.kind, f.day, f.ids) for f in ws.verify()] == [
        (EVENTS_DELETED, day, tuple(sorted(e["id"] for e in events)))
    ]


def test_an_edited_receipt_file_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    files = _files(ws.receipts)
    name = list(files)[1]
    edited = files[name] | {"count": files[name]["count"] - 1}
    (ws.receipts / name).write_text(json.dumps(edited))
    day = date.fromisoformat(name[:10])
    following = list(files)[2]
    kinds = sorted((f.kind, f.day, f.text) for f in ws.verify())
    assert kinds == sorted(
        [
            (
                RECEIPT_EDITED,
                day,
                f"receipt {name} was edited: its header no longer hashes to the hash it states",
            ),
            (
                RECEIPT_EDITED,
                day,
                f"receipt {name} was edited: its event list does not make "
                "its Merkle root and count",
            ),
            (
                CHAIN_BROKEN,
                date.fromisoformat(following[:10]),
                f"receipt {following} does not "
                f"point at {name}, the receipt before it (one of them was replaced)",
            ),
            (
                SIGNATURE_INVALID,
                day,
                f"receipt {name}'s signature does not verify (the "
                "receipt or its signature was changed)",
            ),
            (
                TABLE_DIFFERS,
                day,
                f"daily_receipts lists {name} ({files[name]['hash'][:12]}), "
                "which no receipt file holds",
            ),
            (TABLE_DIFFERS, day, f"receipt {name} has no row in daily_receipts"),
        ]
    )


def test_a_deleted_receipt_file_is_named(synced: Synced, tmp_path: Path) -> None:
    ws = synced.copy(tmp_path)
    files = list(_files(ws.receipts))
    (ws.receipts / files[1]).unlink()
    day = date.fromisoformat(files[1][:10])
    found = sorted((f.kind, f.day, f.ids) for f in ws.verify())
    assert found == sorted(
        [
            (RECEIPT_MISSING, None, ()),
            (TABLE_DIFFERS, day, ()),
            # its day's events have no receipt now
            (
                "day_without_receipt",
                day,
                tuple(sorted(e["id"] for e in ws.by_day[day])),
            ),
        ]
    )


def test_verify_receipts_on_the_command_line(
    synced: Synced, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = synced.copy(tmp_path)
    args = (
        "verify",
        "--receipts",
        "--receipts-dir",
        str(ws.receipts),
        "--db",
        ws.target.db,
        "--pipelines-dir",
        str(tmp_path / "p2"),
    )
    ok = run_cli_captured(capsys, *args)
    assert ok.returncode == 0, ok.stderr
    days = len(ws.by_day)
    assert ok.stdout.startswith(f"receipts in {ws.receipts}: {days} receipt(s), {days} day(s), "), (
        ok.stdout
    )
    assert f"signatures checked with {PUBLIC_KEY} (from {PUBLIC_KEY_VARIABLE})" in ok.stdout
    day, events = _a_day(ws)
    ws.sql("delete from {ds}.audit_logs where id = ?", events[0]["id"])
    bad = run_cli_captured(capsys, *args)
    assert bad.returncode == 3
    assert (
        f"  {day.isoformat()}: 1 event(s) deleted since receipt {day.isoformat()}.r0.json: "
        f"{events[0]['id']}"
    ) in bad.stdout.splitlines()
    assert bad.stderr.strip().startswith(
        "tfy-audit: the warehouse or its receipts changed: 1 finding(s) on 1 day(s)"
    ), bad.stderr


def test_late_events_reissue_their_day_in_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, SEED)
    sim = make_simulator(60, days=2, seed=8)
    target = DestinationOptions(db=str(tmp_path / "a.duckdb"), pipelines_dir=str(tmp_path / "p"))
    receipts = tmp_path / "receipts"
    _sync(sim, target, receipts)
    before = _files(receipts)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)
    late = sim.add_events(make_event(random.Random(f"late{i}"), noon) for i in range(2))
    # the lookback reaches back over yesterday: the run reads the late events
    summary = _sync(sim, target, receipts, lookback=timedelta(days=2))
    after = _files(receipts)
    reissue = f"{yesterday.isoformat()}.r1.json"
    assert set(after) - set(before) == {reissue}
    assert [(r["day"], r["seq"]) for r in summary.receipts["issued"]] == [
        (yesterday.isoformat(), 1)
    ]
    old, new = after[f"{yesterday.isoformat()}.r0.json"], after[reissue]
    assert old == before[f"{yesterday.isoformat()}.r0.json"]  # never rewritten
    assert new["supersedes"] == old["hash"]
    assert new["prev"] == max(before.values(), key=lambda r: r["index"])["hash"]
    assert new["index"] == len(before)
    assert {i for i, _ in new["events"]} == {i for i, _ in old["events"]} | set(late)
    assert new["count"] == new["service_count"] == old["count"] + 2
    pipeline = reading_pipeline(target)
    pipeline.sync_destination()
    assert verify_receipts(pipeline, str(receipts)).findings == []


@pytest.mark.parametrize("issuer", ["as built", "re-issuing anyway"])
def test_a_deletion_is_never_laundered_by_a_reissue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, issuer: str
) -> None:
    """The service expires an event and an admin deletes its row; a later sync re-reads the day.
    The day must not be re-issued without the event (its receipt's event list is read from the
    file: `daily_receipts` rows hold none), and a re-issue that drops an attested event, made
    by an issuer that re-issued anyway, is named by verify."""
    import tfy_audit._engine.receipts as issuing

    monkeypatch.setenv(KEY_VARIABLE, SEED)
    if issuer == "re-issuing anyway":
        monkeypatch.setattr(issuing, "_may_reissue", lambda *args: True)
    sim = make_simulator(60, days=2, seed=8)
    target = DestinationOptions(db=str(tmp_path / "a.duckdb"), pipelines_dir=str(tmp_path / "p"))
    synced = Synced(target, tmp_path / "receipts", _by_day(sim))
    _sync(sim, target, synced.receipts)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    victim = min(e["id"] for e in synced.by_day[yesterday])
    sim.remove_events([victim])
    synced.sql("delete from {ds}.audit_logs where id = ?", victim)
    summary = _sync(sim, target, synced.receipts, lookback=timedelta(days=2))
    found = [(f.kind, f.day, f.ids) for f in synced.verify()]
    if issuer == "as built":
        assert summary.receipts["refused_days"] == [yesterday.isoformat()]
        assert found == [(EVENTS_DELETED, yesterday, (victim,))]
    else:
        assert [(r["day"], r["seq"]) for r in summary.receipts["issued"]] == [
            (yesterday.isoformat(), 1)
        ]
        assert found == [(EVENTS_DELETED, yesterday, (victim,))]


@pytest.mark.postgres
def test_postgres_tamper_cases_are_named(
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = postgres_dataset
    monkeypatch.setenv(KEY_VARIABLE, SEED)
    sim = _simulator()
    by_day = _by_day(sim)
    target = DestinationOptions(
        destination="postgres",
        dataset=ds,
        pipeline_name=f"pg_{ds}",
        pipelines_dir=str(tmp_path / "p"),
    )
    receipts = tmp_path / "receipts"
    _sync(sim, target, receipts)
    ws = Synced(target, receipts, by_day)
    assert ws.verify() == []
    days = sorted(by_day, key=lambda d: -len(by_day[d]))
    deleted = by_day[days[0]][1]["id"]
    leaf_event = next(e for e in by_day[days[0]] if e.get("metaData") and e["id"] != deleted)
    forged_from = by_day[days[1]][0]["id"]
    with postgres() as cur:
        cur.execute(f'delete from "{ds}".audit_logs where id = %s', (deleted,))
        cur.execute(
            f'select min(path) from "{ds}".audit_log_metadata where audit_log_id = %s',
            (leaf_event["id"],),
        )
        (path,) = cur.fetchone()
        cur.execute(
            f'update "{ds}".audit_log_metadata set value = \'"forged"\' '
            "where audit_log_id = %s and path = %s",
            (leaf_event["id"], path),
        )
        cur.execute(
            f'create temp table forged as select * from "{ds}".audit_logs where id = %s',
            (forged_from,),
        )
        cur.execute("update forged set id = 'forged-1'")
        cur.execute(f'insert into "{ds}".audit_logs select * from forged')
        cur.execute(
            f'create temp table forged_leaves as select * from "{ds}".audit_log_metadata '
            "where audit_log_id = %s",
            (forged_from,),
        )
        cur.execute("update forged_leaves set audit_log_id = 'forged-1'")
        cur.execute(f'insert into "{ds}".audit_log_metadata select * from forged_leaves')
        start = datetime(days[2].year, days[2].month, days[2].day, tzinfo=UTC)
        cur.execute(
            f'delete from "{ds}".audit_logs where created_at >= %s and created_at < %s',
            (start, start + timedelta(days=1)),
        )
    files = _files(receipts)
    last = list(files)[-1]
    (receipts / last).write_text(json.dumps(files[last] | {"service_count": 1}))
    found = sorted(((f.kind, f.day, f.ids) for f in ws.verify()), key=repr)
    last_day = date.fromisoformat(last[:10])
    expected = [
        (EVENTS_DELETED, days[0], (deleted,)),
        (LEAVES_CHANGED, days[0], (f"{leaf_event['id']} {path}",)),
        (EVENTS_ADDED, days[1], ("forged-1",)),
        (EVENTS_DELETED, days[2], tuple(sorted(e["id"] for e in by_day[days[2]]))),
        (RECEIPT_EDITED, last_day, ()),
        (SIGNATURE_INVALID, last_day, ()),
        (TABLE_DIFFERS, last_day, ()),
        (TABLE_DIFFERS, last_day, ()),
    ]
    assert found == sorted(expected, key=repr)
