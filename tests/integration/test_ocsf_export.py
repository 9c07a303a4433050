"""`tfy-audit export --format ocsf`: one simulated history that holds every action and subject
type of the spec and the catalogue, one sync, one export; then the files are checked against
the history (partitions and ids), against OCSF (pydantic-ocsf), and against the view on DuckDB
and PostgreSQL. A second, small warehouse checks incremental export and re-export; S3 runs on
moto's server."""

from __future__ import annotations

import copy
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel
from tfy_audit._export.ocsf import export_ocsf
from tfy_audit._export.options import ExportOptions
from tfy_audit._ocsf.mapping import classes, resolve
from tfy_audit._ocsf.nest import class_columns, nest
from tfy_audit._warehouse.adapter import sql_reader
from tfy_audit._warehouse.destination import restored_pipeline
from tfy_audit._warehouse.views import view_columns, view_select
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history
from tfy_audit.simulator.actions import ACTIONS
from tfy_audit.simulator.spec_enums import SPEC_SUBJECT_TYPES

from tests.conftest import API_KEY, NOW, Workspace, isolate_env, run_cli
from tests.integration.test_views import POSTGRES_URL

pytestmark = pytest.mark.xdist_group("test_ocsf_export")

SOURCES = {c.source: c.uid for c in classes().values()}


def _day(created_at: str) -> str:
    return (
        datetime.fromisoformat(created_at.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y%m%d")
    )


def expected_partitions(events: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(source folder, eventDay) -> ids, from the history itself."""
    by_uid = {c.uid: c.source for c in classes().values()}
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        out[(by_uid[resolve(e["action"]).class_uid], _day(e["createdAt"]))].add(e["id"])
    return dict(out)


def read_export(
    root: str, fs: pafs.FileSystem | None = None
) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    """(source folder, eventDay) -> event id -> event (None attributes dropped), checking the
    partition path's region and account on the way."""
    fs = fs or pafs.LocalFileSystem()
    out: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        rel = info.path[len(root) :].strip("/").split("/")
        source, region, account, day, name = rel
        assert (region, account) == ("region=eu-west-1", "accountId=123456789012"), rel
        assert day.startswith("eventDay=") and name.startswith(day[9:] + "-")
        for row in pq.read_table(info.path, filesystem=fs).to_pylist():
            event = nest(_flatten(row))
            out[(source, day[9:])][event["metadata"]["uid"]] = event
    return dict(out)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A Parquet row back to the view's flat columns (lists as name_N)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}__"))
        elif isinstance(value, list):
            for i, element in enumerate(value):
                flat.update(_flatten(element, f"{prefix}{key}_{i}__"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class Exported:
    history: list[dict[str, Any]]
    ws: Workspace
    out: Path
    events: dict[tuple[str, str], dict[str, dict[str, Any]]]
    url: str


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, tmp_path_factory)
        tmp = tmp_path_factory.mktemp("ocsf")
        history = generate_history(900, days=4, seed=25, end=NOW)
        sim = Simulator(SimulatorConfig(api_key=API_KEY), history)
        ws = Workspace(tmp / "audit.duckdb", tmp / "pipelines")
        with SimulatorServer(sim) as srv:
            assert run_cli(*ws.sync_args(srv.url)) == 0
            out = tmp / "lake"
            code = run_cli(
                "export", "--db", str(ws.db), "--out", str(out),
                "--region", "eu-west-1", "--account-id", "123456789012",
            )  # fmt: skip
            assert code == 0
            yield Exported(history, ws, out, read_export(out.as_posix()), srv.url)


def test_partitions_and_their_ids_are_exact(exported: Exported) -> None:
    found = {key: set(events) for key, events in exported.events.items()}
    assert found == expected_partitions(exported.history)
    assert {source for source, _ in found} == set(SOURCES)  # both classes have events


def test_the_history_covers_every_action_and_subject_type(exported: Exported) -> None:
    actions = {e["action"] for e in exported.history}
    assert {a[0] for a in ACTIONS} <= actions
    assert set(SPEC_SUBJECT_TYPES) <= {e["subject"]["subjectType"] for e in exported.history}
    exported_actions = {
        ev.get("api", {}).get("operation") or ev["unmapped"]["action"]
        for events in exported.events.values()
        for ev in events.values()
    }
    assert exported_actions == actions


def _unknown_attributes(model: Any, path: str = "$") -> list[str]:
    """Attributes the model's schema does not declare (pydantic-ocsf's models accept extras),
    outside `unmapped`, which is OCSF's place for them."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}.{k}" for k in model.model_extra or {}]
        for name in type(model).model_fields:
            if name != "unmapped":
                found += _unknown_attributes(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += _unknown_attributes(item, f"{path}[{i}]")
    return found


# 1.1.0's generated models leave out the attributes its schema includes from the
# classification file; 1.5.0's declare and require them
_CLASSIFICATION = {"class_uid", "class_name", "category_uid", "category_name", "type_uid",
                   "type_name", "time"}  # fmt: skip


def test_every_exported_event_validates_against_ocsf(exported: Exported) -> None:
    from ocsf.v1_1_0 import events as v11
    from ocsf.v1_5_0 import events as v15

    models = {
        6003: (v11.ApiActivity, v15.ApiActivity),
        3001: (v11.AccountChange, v15.AccountChange),
    }
    checked = 0
    for (source, day), events in exported.events.items():
        for event in events.values():
            uid = event["class_uid"]
            assert SOURCES[source] == uid
            c = classes()[uid]
            assert event["category_uid"] == c.category_uid
            assert event["type_uid"] == uid * 100 + event["activity_id"]
            assert event["metadata"]["version"] == "1.1.0"
            assert datetime.fromtimestamp(event["time"] / 1000, UTC).strftime("%Y%m%d") == day
            old, new = models[uid]
            unknown = _unknown_attributes(old.model_validate(event))
            assert {u.removeprefix("$.") for u in unknown} <= _CLASSIFICATION, unknown
            assert _unknown_attributes(new.model_validate(event)) == []
            checked += 1
    assert checked == len(exported.history)


def test_fields_of_one_event_of_each_class(exported: Exported) -> None:
    by_id = {e["id"]: e for e in exported.history}
    for (source, _), events in exported.events.items():
        event_id, event = next(iter(sorted(events.items())))
        raw = by_id[event_id]
        s = raw["subject"]
        assert event["actor"]["user"]["uid"] == s["subjectId"]
        assert event["actor"]["user"].get("name") == (s.get("subjectSlug") or None)
        assert event["actor"]["user"].get("credential_uid") == (s.get("subjectPatName") or None)
        assert event["metadata"]["tenant_uid"] == raw["tenantName"]
        assert event["http_request"]["url"]["path"] == raw["requestPath"]
        assert json.loads(event["unmapped"]["meta_data"]) == raw["metaData"]
        if SOURCES[source] == 6003:
            assert event["api"]["operation"] == raw["action"]
            assert event["resources"][0]["uid"] == raw["resourceId"]
        else:
            assert event["user"]["uid"] == raw["resourceId"]
            assert event["unmapped"]["action"] == raw["action"]


def _view_events(pipeline: Any) -> dict[str, dict[str, Any]]:
    columns = view_columns("ocsf_api_activity")
    with sql_reader(pipeline) as client:
        rows = client.execute_sql(
            view_select("ocsf_api_activity", client.fully_qualified_dataset_name())
        )
    out = {}
    for row in rows:
        flat = dict(zip(columns, row, strict=True))
        kept = class_columns(columns, classes()[flat["class_uid"]])
        event = nest({c: flat[c] for c in kept})
        out[event["metadata"]["uid"]] = event
    return out


def _assert_same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, or the first differing attribute of the first differing event named."""
    assert set(found) == set(expected)
    for key in sorted(found):
        f, e = _flatten(found[key]), _flatten(expected[key])
        for json_text in ("unmapped__meta_data", "unmapped__extra_fields"):  # jsonb's own text
            f[json_text], e[json_text] = (
                json.loads(v) if v is not None else None
                for v in (f.get(json_text), e.get(json_text))
            )
        differing = {c: (f.get(c), e.get(c)) for c in set(f) | set(e) if f.get(c) != e.get(c)}
        assert not differing, f"{key}: {differing}"


def _exported_by_id(exported: Exported) -> dict[str, dict[str, Any]]:
    return {i: e for events in exported.events.values() for i, e in events.items()}


def test_the_view_gives_the_exported_rows_on_duckdb(exported: Exported) -> None:
    from tfy_audit._core.options import DestinationOptions

    target = DestinationOptions(
        db=str(exported.ws.db), pipelines_dir=str(exported.ws.pipelines_dir)
    )
    with restored_pipeline(target, read_only=True) as pipeline:
        _assert_same(_view_events(pipeline), _exported_by_id(exported))


@pytest.mark.postgres
def test_the_view_gives_the_exported_rows_on_postgres(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfy_audit._core.options import DestinationOptions

    dataset = f"ocsf_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    sync = ["sync", "--host", exported.url, "--destination", "postgres", "--dataset", dataset,
            "--pipelines-dir", str(tmp_path / "p"), "--no-progress"]  # fmt: skip
    assert run_cli(*sync) == 0
    try:
        target = DestinationOptions(destination="postgres", dataset=dataset)
        with restored_pipeline(target, read_only=True) as pipeline:
            _assert_same(_view_events(pipeline), _exported_by_id(exported))
    finally:
        import psycopg2

        with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')


# -- incremental export and re-export, on a small warehouse of their own --------------------


def _late_event(like: dict[str, Any], at: datetime) -> dict[str, Any]:
    event = copy.deepcopy(like)
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event.update(id="clate" + uuid.uuid4().hex[:20], createdAt=stamp, updatedAt=stamp)
    return event


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.parquet")}


def test_incremental_export_writes_only_changed_days_and_reexport_replaces(
    tmp_path: Path,
) -> None:
    history = generate_history(160, days=3, seed=26, end=NOW)
    sim = Simulator(SimulatorConfig(api_key=API_KEY), history)
    ws = Workspace(tmp_path / "small.duckdb", tmp_path / "pipelines")
    out = tmp_path / "lake"
    options = ExportOptions(out=str(out), region="eu-west-1", account_id="123456789012")
    from tfy_audit._core.options import DestinationOptions

    target = DestinationOptions(db=str(ws.db), pipelines_dir=str(ws.pipelines_dir))
    with SimulatorServer(sim) as srv:
        assert run_cli(*ws.sync_args(srv.url)) == 0
        with restored_pipeline(target, read_only=True) as pipeline:
            first = export_ocsf(pipeline, options)
            days = sorted({_day(e["createdAt"]) for e in history})
            assert first.days == days
            assert export_ocsf(pipeline, options).days == []  # nothing changed
        before = _files(out)

        # a late event on the oldest day, read by a one-off sync of that range
        oldest = datetime.strptime(days[0], "%Y%m%d").replace(tzinfo=UTC)
        late = _late_event(history[0], oldest + timedelta(hours=23, minutes=59))
        sim.add_events([late])
        assert run_cli(*ws.sync_args(srv.url, "--start", oldest.isoformat())) == 0

    with restored_pipeline(target, read_only=True) as pipeline:
        second = export_ocsf(pipeline, options)
        assert second.days == [days[0]]
        assert second.events == sum(1 for e in [*history, late] if _day(e["createdAt"]) == days[0])
        after = _files(out)
        untouched = {f for f in before if f"eventDay={days[0]}/" not in f}
        assert untouched <= after  # the other days' files were left alone
        assert not (before - untouched) & after  # the changed day's files were replaced
        assert {k: set(v) for k, v in read_export(out.as_posix()).items()} == expected_partitions(
            [*history, late]
        )

        # re-exporting a range replaces exactly its days' partitions, with the same ids
        day_start = datetime.strptime(days[1], "%Y%m%d").replace(tzinfo=UTC)
        again = export_ocsf(
            pipeline,
            ExportOptions(
                out=str(out), region="eu-west-1", account_id="123456789012",
                start=day_start, end=day_start + timedelta(days=1),
            ),
        )  # fmt: skip
        assert again.days == [days[1]]
        assert again.replaced == len({f for f in after if f"eventDay={days[1]}/" in f})
        final = _files(out)
        assert {f for f in after if f"eventDay={days[1]}/" not in f} <= final
        assert not {f for f in after if f"eventDay={days[1]}/" in f} & final
        assert {k: set(v) for k, v in read_export(out.as_posix()).items()} == expected_partitions(
            [*history, late]
        )
        assert export_ocsf(pipeline, options).days == []


def test_export_to_s3(exported: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lake")
        code = run_cli(
            "export", "--db", str(exported.ws.db), "--out", "s3://lake/ext",
            "--region", "eu-west-1", "--account-id", "123456789012",
        )  # fmt: skip
        assert code == 0
        fs = pafs.S3FileSystem(
            region="us-east-1", endpoint_override=f"127.0.0.1:{port}", scheme="http"
        )
        assert read_export("lake/ext", fs) == exported.events
        mark = json.loads(fs.open_input_stream("lake/ext/_tfy_audit/ocsf-export.json").read())
        assert set(mark["partitions"]["eu-west-1/123456789012"]) == {
            day for _, day in exported.events
        }
    finally:
        server.stop()
