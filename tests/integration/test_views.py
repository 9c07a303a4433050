"""The analysis views on a small hand-written dataset, on DuckDB and on PostgreSQL.

Every view is checked row for row. The dataset is built here (not by the simulator) so each
expected value can be read off the event list below. The helpers at the top are also used by
`test_report.py`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import dlt
import pytest
from tfy_audit._core.errors import DestinationError, UsageError
from tfy_audit._warehouse.severity import SeverityRule, builtin_rules, load_rules
from tfy_audit._warehouse.view_params import ViewParams, parse_work_hours
from tfy_audit._warehouse.views import VIEW_NAMES, apply_views, view_select, view_sql

POSTGRES_URL = os.environ.get(
    # trust auth ignores the password, but dlt insists that there is one
    "TFY_AUDIT_TEST_POSTGRES",
    "postgresql://postgres:postgres@127.0.0.1:5432/test",
)

# A session zone far from UTC: the views must not depend on it.
SESSION_TZ = "America/New_York"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# (id, created_at, action, resource_type, resource_name, resource_fqn,
#  subject_id, subject_type, subject_slug, subject_display_name, subject_pat_name, message)
EVENTS: list[tuple[Any, ...]] = [
    ("e01", _utc("2026-03-01T09:00:00Z"), "CREATE_SECRET", "secret", "db-password",
     "acme:secret-group:prod:db-password", "u-alice", "user", "alice@acme.io", "Alice", None,
     "created secret db-password"),
    ("e02", _utc("2026-03-01T10:00:00Z"), "APPLY_ROLE_BINDING", "role-binding", "admins",
     "acme:role-binding:admins", "u-alice", "user", "alice@acme.io", "Alice", None,
     "granted tenant-admin to team platform"),
    ("e11", _utc("2026-03-01T12:00:00Z"), "CREATE_SECRET", "secret", "api-key",
     "acme:secret-group:prod:api-key", "u-bob", "user", "bob@acme.io", "Bob", None,
     "created secret api-key"),
    # 01:15 on 2 March in India is still 1 March in UTC
    ("e03", _utc("2026-03-02T01:15:00+05:30"), "CREATE_DEPLOYMENT", "application", "web",
     "acme:ws:prod:web", "u-bob", "user", "bob@acme.io", "Bob", None, "deployed web v1"),
    # an action the spec does not know yet, on a resource type it does: still sensitive
    ("e04", _utc("2026-03-01T23:30:00Z"), "ROTATE_SIGNING_KEY", "secret", "signing-key",
     "acme:secret:signing-key", "va-ci", "virtualaccount", "ci-bot", None, "deploy-token",
     "rotated signing key"),
    # 23:30 and 00:30 UTC: two UTC days, one day in New York
    ("e05", _utc("2026-03-02T00:30:00Z"), "DELETE_APPLICATION", "application", "web",
     "acme:ws:prod:web", "u-alice", "user", "alice@acme.io", "Alice", None,
     "<script>alert(1)</script> supprimé ✓ — ünïcødé 日本"),
    # same instant as e05 and e12: ties are broken by id
    ("e06", _utc("2026-03-02T00:30:00Z"), "CREATE_PAT", "user", "alice@acme.io",
     "acme:user:alice@acme.io", "u-alice", "user", "alice@acme.io", "Alice Liddell", None,
     "created PAT laptop"),
    ("e12", _utc("2026-03-02T00:30:00Z"), "PAUSE_APPLICATION", "application", "web",
     "acme:ws:prod:web", "u-bob", "user", "bob@acme.io", "Bob", None, "paused web"),
    ("e07", _utc("2026-03-02T08:00:00Z"), "UPDATE_SECRET", "secret", "db-password",
     "acme:secret-group:prod:db-password", "va-ci", "virtualaccount", "ci-bot", None,
     "deploy-token", "rotated db password"),
    # contains PAT but not as a word: not a token action
    ("e08", _utc("2026-03-02T09:00:00Z"), "PATCH_APPLICATION", "application", "web",
     "acme:ws:prod:web", "u-bob", "user", "bob@acme.io", "Bob", None, "scaled web to 3"),
    # a subject type the spec does not list
    ("e09", _utc("2026-03-02T10:00:00Z"), "APPLY_EXTERNAL_IDENTITY_PROVIDER",
     "external-identity-provider", "okta", "acme:external-identity-provider:okta", "wl-1",
     "workload-identity", "gha-runner", "GitHub runner", None, "configured okta"),
    ("e10", _utc("2026-03-02T11:00:00Z"), "DELETE_SECRET", "secret", "db-password",
     "acme:secret-group:prod:db-password", "u-bob", "user", "bob@acme.io", "Bob", None,
     "deleted db-password"),
]  # fmt: skip

EVENT_BY_ID = {e[0]: e for e in EVENTS}
SENSITIVE_CATEGORY = {
    "e01": "secret",
    "e02": "access",
    "e04": "secret",
    "e05": "deletion",
    "e06": "token",
    "e07": "secret",
    "e09": "identity",
    "e10": "secret",
    "e11": "secret",
}
SCRIPT_MESSAGE = EVENT_BY_ID["e05"][11]
TENANT = "acme"


def _ts_col() -> dict[str, Any]:
    return {"data_type": "timestamp", "timezone": True, "nullable": True}


def _text_cols(*names: str) -> dict[str, dict[str, Any]]:
    return {n: {"data_type": "text", "nullable": True} for n in names}


def _audit_log_rows() -> list[dict[str, Any]]:
    rows = []
    for eid, at, action, rtype, rname, fqn, sid, stype, slug, display, pat, msg in EVENTS:
        rows.append(
            {
                "id": eid,
                "action": action,
                "request_path": f"/api/svc/v1/{rtype}",
                "resource_id": f"id-{rname}",
                "resource_type": rtype,
                "resource_name": rname,
                "resource_fqn": fqn,
                "parent_resource_id": None,
                "parent_resource_type": None,
                "tenant_name": TENANT,
                "cluster_id": None,
                "workspace_id": "ws-prod" if rtype == "application" else None,
                "message": msg,
                "created_at": at,
                "updated_at": at,
                "subject": {
                    "subject_id": sid,
                    "subject_type": stype,
                    "subject_slug": slug,
                    "subject_display_name": display,
                    "subject_pat_name": pat,
                    "subject_controller_name": None,
                    "subject_external_identity_slug": None,
                },
                "meta_data": {"diff": {"name": rname}},
                "extra_fields": None,
            }
        )
    return rows


def _subject_rows() -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for _, at, *_rest in sorted(EVENTS, key=lambda e: (e[1], e[0])):
        sid, stype, slug, display, pat = _rest[4:9]
        first = latest.get(sid, {}).get("first_seen_at", at)
        latest[sid] = {
            "subject_id": sid,
            "subject_type": stype,
            "subject_slug": slug,
            "subject_display_name": display,
            "subject_pat_name": pat,
            "subject_controller_name": None,
            "subject_external_identity_slug": None,
            "first_seen_at": first,
            "last_seen_at": at,
        }
    return list(latest.values())


def sync_window_rows() -> list[dict[str, Any]]:
    return [
        {
            "window_start": _utc("2026-03-01T00:00:00Z"),
            "window_end": _utc("2026-03-02T00:00:00Z"),
            "filter_key": "all",
            "filters": "{}",
            "planned_count": 5,
            "service_total": 5,
            "rows_read": 5,
            "pages": 1,
            "reads": 2,
            "complete": True,
            "sync_id": "sync-1",
            "load_id": "1",
            "fetched_at": _utc("2026-03-02T12:00:00Z"),
        },
        {
            "window_start": _utc("2026-03-02T00:00:00Z"),
            "window_end": _utc("2026-03-02T12:00:00Z"),
            "filter_key": "all",
            "filters": "{}",
            "planned_count": 7,
            "service_total": 8,
            "rows_read": 7,
            "pages": 1,
            "reads": 2,
            "complete": False,
            "sync_id": "sync-1",
            "load_id": "1",
            "fetched_at": _utc("2026-03-02T12:00:05Z"),
        },
    ]


@dlt.source(name="truefoundry_audit")
def fixture_source() -> Iterator[Any]:
    """The four tables of the real source, with the same column names and types."""
    yield dlt.resource(
        _audit_log_rows(),
        name="audit_logs",
        primary_key="id",
        write_disposition="replace",
        columns={
            **_text_cols(
                "parent_resource_id",
                "parent_resource_type",
                "cluster_id",
                "workspace_id",
                "subject__subject_pat_name",
                "subject__subject_controller_name",
                "subject__subject_external_identity_slug",
                "subject__subject_display_name",
            ),
            "created_at": _ts_col(),
            "updated_at": _ts_col(),
            "meta_data": {"data_type": "json", "nullable": True},
            "extra_fields": {"data_type": "json", "nullable": True},
        },
    )
    yield dlt.resource(
        _subject_rows(),
        name="subjects",
        primary_key="subject_id",
        write_disposition="replace",
        columns={
            **_text_cols(
                "subject_display_name",
                "subject_pat_name",
                "subject_controller_name",
                "subject_external_identity_slug",
            ),
            "first_seen_at": _ts_col(),
            "last_seen_at": _ts_col(),
        },
    )
    yield dlt.resource(
        [
            {
                "audit_log_id": "e01",
                "path": "$.diff.name",
                "value": '"db-password"',
                "value_type": "string",
            }
        ],
        name="audit_log_metadata",
        write_disposition="replace",
    )
    yield dlt.resource(
        sync_window_rows(),
        name="sync_windows",
        write_disposition="replace",
        columns={
            "window_start": _ts_col(),
            "window_end": _ts_col(),
            "fetched_at": _ts_col(),
            "filters": {"data_type": "text"},
        },
    )


def load_fixture(pipeline: dlt.Pipeline) -> None:
    pipeline.run(fixture_source())


def duckdb_pipeline(root: Path, name: str = "views_test") -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(root / f"{name}.duckdb")),
        dataset_name="truefoundry_audit",
        pipelines_dir=str(root / "pipelines"),
    )


def postgres_pipeline_or_skip(root: Path, dataset: str) -> dlt.Pipeline:
    """A pipeline on the test PostgreSQL; skips if it is down, fails instead under CI=true."""
    parts = urlsplit(POSTGRES_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        reason = f"PostgreSQL is not reachable at {host}:{port} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return dlt.pipeline(
        pipeline_name=f"pg_{dataset}",
        destination=dlt.destinations.postgres(POSTGRES_URL),
        dataset_name=dataset,
        pipelines_dir=str(root / "pipelines"),
    )


def drop_dataset(pipeline: dlt.Pipeline) -> None:
    with pipeline.sql_client() as client:
        client.execute_sql(f"DROP SCHEMA IF EXISTS {client.fully_qualified_dataset_name()} CASCADE")


# --------------------------------------------------------------------------- expectations

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)

DAILY_ACTIVITY = [
    (D1, "APPLY_ROLE_BINDING", "role-binding", "user", 1),
    (D1, "CREATE_DEPLOYMENT", "application", "user", 1),
    (D1, "CREATE_SECRET", "secret", "user", 2),
    (D1, "ROTATE_SIGNING_KEY", "secret", "virtualaccount", 1),
    (D2, "APPLY_EXTERNAL_IDENTITY_PROVIDER", "external-identity-provider", "workload-identity", 1),
    (D2, "CREATE_PAT", "user", "user", 1),
    (D2, "DELETE_APPLICATION", "application", "user", 1),
    (D2, "DELETE_SECRET", "secret", "user", 1),
    (D2, "PATCH_APPLICATION", "application", "user", 1),
    (D2, "PAUSE_APPLICATION", "application", "user", 1),
    (D2, "UPDATE_SECRET", "secret", "virtualaccount", 1),
]

SUBJECT_ACTIVITY = [
    # display name and last action come from the latest event; e06 beats e05 (same instant) by id
    ("u-alice", "user", "alice@acme.io", "Alice Liddell", 4, 4,
     _utc("2026-03-01T09:00:00Z"), _utc("2026-03-02T00:30:00Z"), "CREATE_PAT"),
    ("u-bob", "user", "bob@acme.io", "Bob", 5, 5,
     _utc("2026-03-01T12:00:00Z"), _utc("2026-03-02T11:00:00Z"), "DELETE_SECRET"),
    ("va-ci", "virtualaccount", "ci-bot", None, 2, 2,
     _utc("2026-03-01T23:30:00Z"), _utc("2026-03-02T08:00:00Z"), "UPDATE_SECRET"),
    ("wl-1", "workload-identity", "gha-runner", "GitHub runner", 1, 1,
     _utc("2026-03-02T10:00:00Z"), _utc("2026-03-02T10:00:00Z"),
     "APPLY_EXTERNAL_IDENTITY_PROVIDER"),
]  # fmt: skip

RESOURCE_SEQUENCES = {
    "acme:secret-group:prod:db-password": ["e01", "e07", "e10"],
    "acme:secret-group:prod:api-key": ["e11"],
    "acme:role-binding:admins": ["e02"],
    # e05 and e12 share an instant: id order
    "acme:ws:prod:web": ["e03", "e05", "e12", "e08"],
    "acme:secret:signing-key": ["e04"],
    "acme:user:alice@acme.io": ["e06"],
    "acme:external-identity-provider:okta": ["e09"],
}


# severity by the built-in rules: an identity-provider change is critical, a role binding (not
# to platform-admins), a PAT and a secret deletion are high, the rest notable
SEVERITY = {
    "e01": "notable",
    "e02": "high",
    "e04": "notable",
    "e05": "notable",
    "e06": "high",
    "e07": "notable",
    "e09": "critical",
    "e10": "high",
    "e11": "notable",
}

# A user's rules: one raises a named secret, one lowers an identity-provider change, one adds
# an action no category covers (it joins the view as category 'other').
USER_RULES = (
    SeverityRule("critical", "CREATE_SECRET", "secret", "api-key"),
    SeverityRule("notable", "APPLY_EXTERNAL_IDENTITY_PROVIDER"),
    SeverityRule("high", "PAUSE_APPLICATION", "application"),
)
SEVERITY_WITH_USER_RULES = {**SEVERITY, "e11": "critical", "e09": "notable", "e12": "high"}

# Outside 08-19 Mon-Fri in UTC: 1 March 2026 is a Sunday; 00:30 on Monday is before 08:00.
OFF_HOURS_UTC = ["e01", "e02", "e03", "e04", "e05", "e06", "e11", "e12"]
# Outside 09-18 in Tokyo (UTC+9): Sunday evening, Monday before 09:00 and from 18:00 on.
OFF_HOURS_TOKYO = ["e01", "e02", "e03", "e04", "e08", "e09", "e10", "e11"]


def _off_hours_row(eid: str, zone: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, _fqn, sid, stype, slug, display, _pat, msg = EVENT_BY_ID[eid]
    local = at.astimezone(ZoneInfo(zone))
    return (
        eid, at, local.replace(tzinfo=None), local.isoweekday(), local.isoweekday() >= 6, sid,
        stype, slug, display, action, rtype, rname, msg,
    )  # fmt: skip


ACCESS_CHANGES = [
    ("e02", _utc("2026-03-01T10:00:00Z"), "grant", "high", "APPLY_ROLE_BINDING", "role-binding",
     "admins", "acme:role-binding:admins", "u-alice", "user", "alice@acme.io", "Alice", None,
     "granted tenant-admin to team platform"),
]  # fmt: skip


def _external_row(eid: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, _fqn, sid, stype, slug, display, pat, _msg = EVENT_BY_ID[eid]
    return (
        eid, at, "virtual account", sid, stype, slug, display, None, None, pat, action, rtype,
        rname, None,
    )  # fmt: skip


def _token_row(eid: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, _fqn, sid, stype, slug, display, pat, _msg = EVENT_BY_ID[eid]
    return (eid, at, pat, "account token", sid, stype, slug, display, action, rtype, rname, None)


def _workspace_row(eid: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, _fqn, sid, *_rest = EVENT_BY_ID[eid]
    return (eid, at, None, "ws-prod", None, action, rtype, rname, sid, action.startswith("DELETE_"))


def _sensitive_row(eid: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, fqn, sid, stype, slug, display, pat, msg = EVENT_BY_ID[eid]
    workspace = "ws-prod" if rtype == "application" else None
    return (
        eid, at, SENSITIVE_CATEGORY[eid], action.startswith("DELETE_"), action, rtype,
        f"id-{rname}", rname, fqn, sid, stype, slug, display, pat, TENANT, workspace, msg,
    )  # fmt: skip


def _deletion_row(eid: str) -> tuple[Any, ...]:
    _, at, action, rtype, rname, fqn, sid, stype, slug, display, pat, msg = EVENT_BY_ID[eid]
    workspace = "ws-prod" if rtype == "application" else None
    return (
        eid, at, action, rtype, f"id-{rname}", rname, fqn, None, None, sid, stype, slug,
        display, pat, TENANT, None, workspace, msg,
    )  # fmt: skip


def _history_rows() -> list[tuple[Any, ...]]:
    rows = []
    for fqn in sorted(RESOURCE_SEQUENCES):
        for seq, eid in enumerate(RESOURCE_SEQUENCES[fqn], start=1):
            _, at, action, rtype, rname, _f, sid, stype, slug, _d, _p, msg = EVENT_BY_ID[eid]
            rows.append(
                (fqn, seq, at, eid, action, rtype, f"id-{rname}", rname, slug, sid, stype, msg)
            )
    return rows


def _query(client: Any, sql: str, key_columns: int = 1) -> list[tuple[Any, ...]]:
    """Rows sorted here by their leading columns: PostgreSQL's text order follows the locale."""
    rows = [tuple(r) for r in client.execute_sql(sql) or []]
    return sorted(rows, key=lambda r: r[:key_columns])


def assert_views(pipeline: dlt.Pipeline) -> None:
    """Every view's exact rows, read in a session whose time zone is not UTC."""
    with pipeline.sql_client() as client:
        client.execute_sql(f"SET TimeZone = '{SESSION_TZ}'")
        ds = client.fully_qualified_dataset_name()

        assert (
            _query(
                client,
                f"SELECT day, action, resource_type, subject_type, events FROM {ds}.daily_activity",
                key_columns=4,
            )
            == DAILY_ACTIVITY
        )
        assert (
            _query(
                client,
                "SELECT subject_id, subject_type, subject_slug, subject_display_name, events,"
                " distinct_actions, first_seen_at, last_seen_at, last_action"
                f" FROM {ds}.subject_activity",
            )
            == SUBJECT_ACTIVITY
        )
        assert _query(
            client,
            "SELECT id, created_at, category, is_deletion, action, resource_type, resource_id,"
            " resource_name, resource_fqn, subject_id, subject_type, subject_slug,"
            " subject_display_name, subject_pat_name, tenant_name, workspace_id, message"
            f" FROM {ds}.sensitive_actions",
        ) == [_sensitive_row(eid) for eid in sorted(SENSITIVE_CATEGORY)]
        assert (
            _query(
                client,
                "SELECT resource_fqn, seq, created_at, id, action, resource_type, resource_id,"
                " resource_name, subject_slug, subject_id, subject_type, message"
                f" FROM {ds}.resource_history",
                key_columns=2,
            )
            == _history_rows()
        )
        assert _query(
            client,
            "SELECT id, created_at, action, resource_type, resource_id, resource_name,"
            " resource_fqn, parent_resource_type, parent_resource_id, subject_id, subject_type,"
            " subject_slug, subject_display_name, subject_pat_name, tenant_name, cluster_id,"
            f" workspace_id, message FROM {ds}.deletions",
        ) == [_deletion_row("e05"), _deletion_row("e10")]
        assert _query(client, f"SELECT id, severity FROM {ds}.sensitive_actions") == sorted(
            SEVERITY.items()
        )
        assert (
            _query(
                client,
                "SELECT id, created_at, change, severity, action, resource_type, resource_name,"
                " resource_fqn, subject_id, subject_type, subject_slug, subject_display_name,"
                f" subject_pat_name, message FROM {ds}.access_changes",
            )
            == ACCESS_CHANGES
        )
        assert _query(
            client,
            "SELECT id, created_at, subject_kind, subject_id, subject_type, subject_slug,"
            " subject_display_name, subject_external_identity_slug, subject_controller_name,"
            " subject_pat_name, action, resource_type, resource_name, workspace_id"
            f" FROM {ds}.external_activity",
        ) == [_external_row("e04"), _external_row("e07")]
        assert _query(
            client,
            "SELECT id, created_at, token_name, token_kind, subject_id, subject_type,"
            " subject_slug, subject_display_name, action, resource_type, resource_name,"
            f" workspace_id FROM {ds}.token_usage",
        ) == [_token_row("e04"), _token_row("e07")]
        assert _query(
            client,
            "SELECT id, created_at, cluster_id, workspace_id, workspace_name, action,"
            f" resource_type, resource_name, subject_id, is_deletion FROM {ds}.workspace_activity",
        ) == [_workspace_row(eid) for eid in ("e03", "e05", "e08", "e12")]
    assert_off_hours(pipeline, "UTC", OFF_HOURS_UTC)


def assert_off_hours(pipeline: dlt.Pipeline, zone: str, expected: list[str]) -> None:
    with pipeline.sql_client() as client:
        client.execute_sql(f"SET TimeZone = '{SESSION_TZ}'")
        ds = client.fully_qualified_dataset_name()
        assert _query(
            client,
            "SELECT id, created_at, local_time, local_weekday, is_weekend, subject_id,"
            " subject_type, subject_slug, subject_display_name, action, resource_type,"
            f" resource_name, message FROM {ds}.off_hours_activity",
        ) == [_off_hours_row(eid, zone) for eid in expected]


def assert_params_apply(pipeline: dlt.Pipeline) -> None:
    """Views created with a user's rules, zone and hours: severity and off-hours follow them."""
    params = ViewParams(USER_RULES, "Asia/Tokyo", 9, 18)
    apply_views(pipeline, params)
    with pipeline.sql_client() as client:
        ds = client.fully_qualified_dataset_name()
        rows = _query(client, f"SELECT id, severity, category FROM {ds}.sensitive_actions")
    assert [(eid, sev) for eid, sev, _ in rows] == sorted(SEVERITY_WITH_USER_RULES.items())
    assert [(eid, cat) for eid, _, cat in rows if eid in ("e12", "e11")] == [
        ("e11", "secret"),
        ("e12", "other"),
    ]
    assert_off_hours(pipeline, "Asia/Tokyo", OFF_HOURS_TOKYO)


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def duckdb_loaded(tmp_path_factory: pytest.TempPathFactory) -> dlt.Pipeline:
    pipeline = duckdb_pipeline(tmp_path_factory.mktemp("views_duckdb"))
    load_fixture(pipeline)
    return pipeline


def test_views_on_duckdb(duckdb_loaded: dlt.Pipeline) -> None:
    assert apply_views(duckdb_loaded) == list(VIEW_NAMES)
    assert_views(duckdb_loaded)
    # applying again replaces the views in place
    assert apply_views(duckdb_loaded) == list(VIEW_NAMES)
    assert_views(duckdb_loaded)
    assert_params_apply(duckdb_loaded)
    apply_views(duckdb_loaded)


def test_a_sync_replaces_only_the_views_not_current(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each view keeps its statement's digest as its comment; `replace_all=False` (a sync's
    refresh) replaces a view that another statement replaced, or that is gone, and leaves the
    rest as they are; `tfy-audit views` (`replace_all`) replaces every one."""
    pipeline = duckdb_pipeline(tmp_path, "stamped")
    load_fixture(pipeline)

    def stamps() -> dict[str, str]:
        with pipeline.sql_client() as client:
            rows = _query(
                client,
                "SELECT view_name, comment FROM duckdb_views() WHERE schema_name = "
                f"'{client.dataset_name}'",
            )
        return dict(rows)

    def created() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tfy_audit._warehouse.views"):
            assert apply_views(pipeline, replace_all=False) == list(VIEW_NAMES)
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("created")]

    assert apply_views(pipeline) == list(VIEW_NAMES)
    before = stamps()
    assert sorted(before) == sorted(VIEW_NAMES)
    assert all(s.startswith("tfy-audit view sha256:") for s in before.values())
    assert len(set(before.values())) == len(VIEW_NAMES)
    assert created() == []

    with pipeline.sql_client() as client:
        ds = client.fully_qualified_dataset_name()
        client.execute_sql(f"CREATE OR REPLACE VIEW {ds}.deletions AS SELECT 1 AS id")
        client.execute_sql(f"DROP VIEW {ds}.token_usage")
    assert created() == [f'created 2 views in "{pipeline.dataset_name}": deletions, token_usage']
    assert stamps() == before
    assert_views(pipeline)

    assert apply_views(pipeline) == list(VIEW_NAMES)  # replace_all: every view, same stamps
    assert stamps() == before


@pytest.mark.postgres
def test_views_on_postgres(tmp_path: Path) -> None:
    pipeline = postgres_pipeline_or_skip(tmp_path, f"test_views_{uuid.uuid4().hex[:12]}")
    try:
        load_fixture(pipeline)
        assert apply_views(pipeline) == list(VIEW_NAMES)
        assert_views(pipeline)
        assert apply_views(pipeline) == list(VIEW_NAMES)
        assert_params_apply(pipeline)
    finally:
        drop_dataset(pipeline)


def test_filesystem_destination_skips_views(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = dlt.pipeline(
        pipeline_name="views_fs",
        destination=dlt.destinations.filesystem(tmp_path.joinpath("bucket").as_uri()),
        dataset_name="truefoundry_audit",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    load_fixture(pipeline)
    with caplog.at_level(logging.INFO, logger="tfy_audit._warehouse.views"):
        assert apply_views(pipeline) == []
    assert "views are skipped" in caplog.text


def test_view_sql_fills_in_the_dataset() -> None:
    for name in VIEW_NAMES:
        sql = view_sql(name, '"my_ds"')
        assert "{dataset}" not in sql
        assert f'CREATE OR REPLACE VIEW "my_ds".{name} AS' in sql
        body = view_select(name, '"my_ds"')
        assert body.upper().startswith("SELECT")
        assert "CREATE OR REPLACE" not in body.upper()
        assert not body.endswith(";")


def test_unknown_view_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known views: daily_activity"):
        view_sql("no_such_view", '"ds"')


def test_every_sql_file_is_a_known_view() -> None:
    from importlib import resources

    files = {
        p.name.removesuffix(".sql")
        for p in resources.files("tfy_audit._warehouse.sql").iterdir()
        if p.name.endswith(".sql")
    }
    assert files == set(VIEW_NAMES)


def test_views_need_loaded_events(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="no audit_logs table yet"):
        apply_views(duckdb_pipeline(tmp_path, "never_loaded"))


def test_builtin_severity_rules_parse() -> None:
    rules = builtin_rules()
    assert SeverityRule("critical", "DELETE_TENANT") in rules
    assert {r.severity for r in rules} == {"critical", "high"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("action,severity\n", "first line must be the header"),
        ("severity,action,resource_type,resource_name\nurgent,X,*,*\n", "severity 'urgent'"),
        ("severity,action,resource_type,resource_name\nhigh,X,*\n", "needs 4 columns"),
        ("severity,action,resource_type,resource_name\nhigh,X');DROP,*,*\n", "unexpected value"),
    ],
)
def test_bad_severity_rules_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        load_rules(path)


def test_severity_rules_file_extends_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "rules.csv"
    path.write_text(
        "# ours\nseverity,action,resource_type,resource_name\n"
        "critical,create_secret,Secret,api-key\n",
        encoding="utf-8",
    )
    assert load_rules(path) == (SeverityRule("critical", "CREATE_SECRET", "secret", "api-key"),)
    with pytest.raises(UsageError, match="cannot read severity rules"):
        load_rules(tmp_path / "missing.csv")


def test_view_params_are_checked() -> None:
    assert parse_work_hours("08-19") == (8, 19)
    for bad in ("8", "08:00-19:00", "x-y"):
        with pytest.raises(UsageError, match="HH-HH"):
            parse_work_hours(bad)
    with pytest.raises(UsageError, match="HH-HH"):
        ViewParams(work_start=19, work_end=8)
    with pytest.raises(UsageError, match="unknown time zone"):
        ViewParams(timezone="Mars/Olympus")
    with pytest.raises(UsageError, match="not a name"):
        ViewParams(timezone="UTC'; DROP TABLE x; --")
