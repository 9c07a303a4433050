"""The simulator's data: timestamps, realistic history, bursts and odd events."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import yaml
from tfy_audit.simulator import (
    dense_burst,
    format_ts,
    generate_history,
    make_event,
    odd_events,
    parse_ts,
)
from tfy_audit.simulator.spec_enums import (
    SPEC_ACTIONS,
    SPEC_RESOURCE_TYPES,
    SPEC_SUBJECT_TYPES,
    SUBJECT_NULLABLE_FIELDS,
    conforms_to_spec_enums,
)

from tests.conftest import spec_path

END = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
REQUIRED = (
    "id",
    "action",
    "requestPath",
    "resourceId",
    "resourceType",
    "resourceName",
    "resourceFqn",
    "parentResourceId",
    "parentResourceType",
    "tenantName",
    "clusterId",
    "workspaceId",
    "subject",
    "metaData",
    "createdAt",
    "updatedAt",
)


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return generate_history(30_000, end=END)


def assert_shaped_like_activity_log(event: dict[str, Any]) -> None:
    for key in REQUIRED:
        assert key in event, key
        if key not in ("subject", "metaData"):
            assert isinstance(event[key], str), (key, event[key])
    assert isinstance(event["metaData"], dict)
    subject = event["subject"]
    assert isinstance(subject["subjectId"], str)
    assert isinstance(subject["subjectType"], str)
    for key in SUBJECT_NULLABLE_FIELDS:
        assert subject.get(key) is None or isinstance(subject[key], str)
    assert parse_ts(event["updatedAt"]) >= parse_ts(event["createdAt"])
    assert format_ts(parse_ts(event["createdAt"])) == event["createdAt"]


# -- timestamps -----------------------------------------------------------------------------------


def test_format_ts_writes_milliseconds_and_z() -> None:
    dt = datetime(2026, 8, 1, 12, 34, 56, 789_999, tzinfo=UTC)
    assert format_ts(dt) == "2026-08-01T12:34:56.789Z"
    plus2 = timezone(timedelta(hours=2))
    assert format_ts(datetime(2026, 8, 1, 14, 0, tzinfo=plus2)) == "2026-08-01T12:00:00.000Z"
    with pytest.raises(ValueError):
        format_ts(datetime(2026, 8, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-01T12:34:56.789Z", datetime(2026, 8, 1, 12, 34, 56, 789_000, tzinfo=UTC)),
        ("2026-08-01T12:34:56Z", datetime(2026, 8, 1, 12, 34, 56, tzinfo=UTC)),
        ("2026-08-01T12:34:56.123456Z", datetime(2026, 8, 1, 12, 34, 56, 123_456, tzinfo=UTC)),
        ("2026-08-01T18:04:56.5+05:30", datetime(2026, 8, 1, 12, 34, 56, 500_000, tzinfo=UTC)),
        ("2026-08-01T11:34:56-01:00", datetime(2026, 8, 1, 12, 34, 56, tzinfo=UTC)),
    ],
)
def test_parse_ts_accepts_utc_and_offsets(text: str, expected: datetime) -> None:
    parsed = parse_ts(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-08-01",
        "2026-08-01T12:34:56",
        "2026-08-01 12:34:56Z",
        "2026-08-01T12:34:56.1234567Z",
        "2026-13-01T12:34:56Z",
        "yesterday",
        "",
        "2026-08-01T12:34:56+0530",
    ],
)
def test_parse_ts_rejects_the_rest(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ts(text)


# -- history --------------------------------------------------------------------------------------


def test_history_is_deterministic_per_seed() -> None:
    a = generate_history(500, end=END, seed=3)
    assert a == generate_history(500, end=END, seed=3)
    assert a != generate_history(500, end=END, seed=4)


def test_history_shape_window_and_order(history: list[dict[str, Any]]) -> None:
    assert len(history) == 30_000
    assert len({e["id"] for e in history}) == 30_000
    assert all(len(e["id"]) == 25 for e in history)
    created = [parse_ts(e["createdAt"]) for e in history]
    assert created == sorted(created)
    assert END - timedelta(days=90) <= created[0]
    assert created[-1] < END
    for event in history[::97]:
        assert_shaped_like_activity_log(event)
    # Bulk operations put several events in one millisecond.
    assert len(set(created)) < len(created)


def test_history_covers_every_spec_enum(history: list[dict[str, Any]]) -> None:
    assert set(SPEC_ACTIONS) <= {e["action"] for e in history}
    assert set(SPEC_RESOURCE_TYPES) <= {e["resourceType"] for e in history}
    assert set(SPEC_SUBJECT_TYPES) <= {e["subject"]["subjectType"] for e in history}


def test_history_has_a_few_future_enum_values(history: list[dict[str, Any]]) -> None:
    unknown = sum(not conforms_to_spec_enums(e) for e in history)
    assert 0.002 * len(history) < unknown < 0.01 * len(history)


def test_spec_enums_match_the_spec_file() -> None:
    spec = yaml.safe_load(spec_path().read_text())
    schemas = spec["components"]["schemas"]
    props = schemas["ActivityLog"]["properties"]
    assert tuple(props["action"]["enum"]) == SPEC_ACTIONS
    assert tuple(props["resourceType"]["enum"]) == SPEC_RESOURCE_TYPES
    assert tuple(props["parentResourceType"]["enum"]) == SPEC_RESOURCE_TYPES
    assert tuple(schemas["SubjectType"]["enum"]) == SPEC_SUBJECT_TYPES


def test_history_looks_like_a_working_tenant(history: list[dict[str, Any]]) -> None:
    days = Counter(parse_ts(e["createdAt"]).weekday() for e in history)
    weekday_avg = sum(days[d] for d in range(5)) / 5
    weekend_avg = (days[5] + days[6]) / 2
    assert weekday_avg > 3 * weekend_avg
    hours = Counter(parse_ts(e["createdAt"]).hour for e in history)
    assert hours[14] > 4 * hours[3]

    # Actions are consistent with resource types.
    pairs = {(e["action"], e["resourceType"]) for e in history if conforms_to_spec_enums(e)}
    assert ("CREATE_SECRET", "secret") in pairs
    assert ("DELETE_APPLICATION", "application") in pairs
    assert ("APPLY_ROLE_BINDING", "role-binding") in pairs
    assert not {p for p in pairs if p[0].endswith("_SECRET") and p[1] != "secret"}

    secret = next(e for e in history if e["resourceType"] == "secret")
    assert secret["resourceFqn"].count(":") == 2
    assert secret["resourceFqn"].startswith(secret["tenantName"] + ":")
    app = next(e for e in history if e["resourceType"] == "application")
    cluster, workspace, name = app["resourceFqn"].split(":")
    assert app["clusterId"] == cluster
    assert name == app["resourceName"]
    assert f" in workspace {workspace}" in app.get("message", f" in workspace {workspace}")
    assert all(e["requestPath"].startswith("/api/svc/v1/") for e in history[:500])

    subjects = {e["subject"]["subjectId"] for e in history}
    assert 40 <= len(subjects) <= 80
    ext = [e["subject"] for e in history if e["subject"]["subjectType"] == "external-identity"]
    assert any(":sub:" in (s.get("subjectExternalIdentitySlug") or "") for s in ext)
    # Old events predate the newer subject fields: the keys are absent, not null.
    assert any("subjectExternalIdentitySlug" not in s for s in ext)
    vas = [e for e in history if e["subject"]["subjectType"] == "virtualaccount"]
    assert any(e["subject"]["subjectPatName"] for e in vas)

    with_message = [e for e in history if "message" in e]
    assert 0.9 * len(history) < len(with_message) < len(history)
    assert any(" deleted application " in e["message"] for e in with_message)


def test_history_metadata_has_many_shapes(history: list[dict[str, Any]]) -> None:
    metas = [e["metaData"] for e in history]
    assert any(m == {} for m in metas)
    assert any("diff" in m for m in metas)
    assert any(isinstance(m.get("changes"), list) for m in metas)
    assert any(any("." in k for k in m) for m in metas)
    assert any(any(not s.isascii() for s in map(str, m.values())) for m in metas)
    types = {type(m["value"]).__name__ for m in metas if "value" in m}
    assert {"str", "int", "float", "bool", "NoneType", "list", "dict"} <= types


def test_make_event_and_overrides() -> None:
    rng = random.Random(1)
    at = datetime(2026, 8, 1, 9, 30, 0, 123_456, tzinfo=UTC)
    event = make_event(rng, at, action="DELETE_SECRET", metaData={"x": 1})
    assert_shaped_like_activity_log(event)
    assert event["createdAt"] == "2026-08-01T09:30:00.123Z"
    assert event["action"] == "DELETE_SECRET"
    assert event["metaData"] == {"x": 1}
    assert make_event(random.Random(1), at) == make_event(random.Random(1), at)


def test_dense_burst_shares_one_millisecond() -> None:
    at = datetime(2026, 8, 1, 10, 0, 0, 500_900, tzinfo=UTC)
    burst = dense_burst(at, 2_000)
    assert {e["createdAt"] for e in burst} == {"2026-08-01T10:00:00.500Z"}
    assert len({e["id"] for e in burst}) == 2_000
    assert burst == dense_burst(at, 2_000)


# -- odd events -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd() -> list[dict[str, Any]]:
    return odd_events(END)


def _walk(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, dict):
        for k, v in value.items():
            out += [k, *_walk(v)]
    elif isinstance(value, list):
        for v in value:
            out += _walk(v)
    return out


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_odd_events_are_valid_and_unique(odd: list[dict[str, Any]]) -> None:
    assert len({e["id"] for e in odd}) == len(odd)
    for event in odd:
        missing = [k for k in REQUIRED if k not in event]
        assert not missing, missing
        json.dumps(event)  # plain JSON all the way down
    created = {parse_ts(e["createdAt"]) for e in odd}
    assert END in created
    assert all(abs(c - END) <= timedelta(seconds=1) for c in created)


def test_odd_events_unknown_enums(odd: list[dict[str, Any]]) -> None:
    assert "ROTATE_SIGNING_KEY" in {e["action"] for e in odd}
    assert {e["resourceType"] for e in odd} - set(SPEC_RESOURCE_TYPES)
    assert {e["parentResourceType"] for e in odd} - set(SPEC_RESOURCE_TYPES)
    assert {e["subject"]["subjectType"] for e in odd} - set(SPEC_SUBJECT_TYPES)


def test_odd_events_unicode_and_keys(odd: list[dict[str, Any]]) -> None:
    texts = [s for e in odd for s in _walk(e) if isinstance(s, str)]
    assert any("🚀" in s for s in texts)
    assert any("部署" in s or "支付" in s for s in texts)
    assert any("שלום" in s or "عمر" in s or "مرحبا" in s for s in texts)
    assert any("支付" in e["resourceName"] for e in odd)
    keys = [k for e in odd for k in e["metaData"]]
    assert any(not k.isascii() for k in keys)
    for needle in (".", " ", '"', "["):
        assert any(needle in k for k in keys), needle
    assert {"Replicas", "replicas"} <= set(keys)


def test_odd_events_polymorphic_and_nested_metadata(odd: list[dict[str, Any]]) -> None:
    values = [e["metaData"]["value"] for e in odd if "value" in e["metaData"]]
    assert {type(v).__name__ for v in values} >= {"str", "int", "dict", "list", "bool", "NoneType"}
    assert any(e["metaData"] == {} for e in odd)
    assert max(_depth(e["metaData"]) for e in odd) >= 6
    nested_lists = [v for e in odd for v in _walk(e["metaData"]) if isinstance(v, list)]
    assert any(any(isinstance(x, dict) for x in v) for v in nested_lists)
    sizes = [len(orjson.dumps(e["metaData"])) for e in odd if "manifestYaml" in e["metaData"]]
    assert sizes and 1_900_000 < sizes[0] < 2_300_000
    numbers = [v for e in odd for v in _walk(e["metaData"]) if isinstance(v, int | float)]
    assert any(isinstance(n, int) and n > 2**53 for n in numbers)
    assert any(isinstance(n, int) and n >= 2**64 for n in numbers)
    assert any(isinstance(n, float) for n in numbers)


def test_odd_events_subjects(odd: list[dict[str, Any]]) -> None:
    subjects = [e["subject"] for e in odd]
    assert any(
        set(s) == {"subjectId", "subjectType", *SUBJECT_NULLABLE_FIELDS}
        and all(s[k] is None for k in SUBJECT_NULLABLE_FIELDS)
        for s in subjects
    )
    assert any(set(s) == {"subjectId", "subjectType"} for s in subjects)
    assert any("message" not in e for e in odd)


def test_history_has_dormant_tokens_late_joiners_and_rare_critical_actions(
    history: list[dict[str, Any]],
) -> None:
    from zoneinfo import ZoneInfo

    from tfy_audit.simulator.catalog import HOME_TIMEZONE, build_catalog

    start = END - timedelta(days=90)

    def share(event: dict[str, Any]) -> float:
        return (parse_ts(event["createdAt"]) - start) / timedelta(days=90)

    windowed = [s for s in build_catalog().subjects if (s.active_from, s.active_until) != (0, 1)]
    assert {(s.slug, s.pat_name) for s in windowed if s.active_until < 1} == {
        ("judy@acme.com", "judy-cli"),
        ("grafana-reader", "grafana-token"),
        ("terraform-sa", "terraform-sa-token"),
    }
    assert len([s for s in windowed if s.active_from > 0]) == 5
    for subject in windowed:
        mine = [
            e
            for e in history
            if e["subject"]["subjectId"] == subject.id
            and e["subject"]["subjectPatName"] == subject.pat_name
        ]
        assert mine, subject.slug
        # the coverage plan pins one event per action to the first subject of each type only
        assert all(subject.active_at(share(e)) for e in mine), subject.slug

    # most activity is inside the home team's working hours, in its own time zone
    home = ZoneInfo(HOME_TIMEZONE)
    local = [parse_ts(e["createdAt"]).astimezone(home) for e in history]
    working = sum(1 for t in local if t.weekday() < 5 and 8 <= t.hour < 19)
    assert 0.65 * len(history) < working < 0.9 * len(history)

    critical = Counter(
        e["action"]
        for e in history
        if e["action"]
        in (
            "DELETE_TENANT",
            "DELETE_ACCOUNT",
            "DELETE_CLUSTER",
            "DELETE_SECRET_GROUP",
            "DELETE_ROLE",
        )
    )
    assert 0 < sum(critical.values()) < 0.001 * len(history), critical
