"""Unit tests of the event -> Arrow rows normalization (`tfy_audit._service.rows`)."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tfy_audit._core.times import parse_timestamp
from tfy_audit._service.columns import AUDIT_LOGS_SCHEMA, METADATA_SCHEMA, SUBJECTS_SCHEMA
from tfy_audit._service.leaves import MAX_PATH_DEPTH, MAX_TEXT_DEPTH, jsonpath_leaves
from tfy_audit._service.rows import EventBatch, normalize_events
from tfy_audit._service.subjects import (
    SubjectObservation,
    merge_subject_observations,
    subjects_table,
)

LOGGER = "tfy_audit._service.rows"

SUBJECT = {
    "subjectId": "u-1",
    "subjectType": "user",
    "subjectSlug": "alice@example.com",
    "subjectDisplayName": "Alice",
    "subjectPatName": None,
    "subjectControllerName": None,
    "subjectExternalIdentitySlug": None,
}


def event(**fields: Any) -> dict[str, Any]:
    """A complete, spec-conforming event; keyword arguments override (None included)."""
    base: dict[str, Any] = {
        "id": "evt-1",
        "action": "CREATE_DEPLOYMENT",
        "requestPath": "/api/svc/v1/apps",
        "resourceId": "res-1",
        "resourceType": "application",
        "resourceName": "my-app",
        "resourceFqn": "acme:cluster-1:ws-1:my-app",
        "parentResourceId": "ws-1",
        "parentResourceType": "workspace",
        "tenantName": "acme",
        "clusterId": "cluster-1",
        "workspaceId": "ws-1",
        "subject": dict(SUBJECT),
        "metaData": {"diff": {"replicas": {"old": 1, "new": 3}}},
        "message": "Deployed my-app",
        "createdAt": "2025-03-01T10:00:00.123Z",
        "updatedAt": "2025-03-01T10:00:01Z",
    }
    base.update(fields)
    return base


def only(batch: EventBatch) -> dict[str, Any]:
    rows = batch.audit_logs.to_pylist()
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def metadata_rows(batch: EventBatch) -> list[tuple[str, str, str, str]]:
    return [
        (r["audit_log_id"], r["path"], r["value"], r["value_type"])
        for r in batch.metadata.to_pylist()
    ]


def leaves(value: Any) -> list[tuple[str, str, str]]:
    return list(jsonpath_leaves(value))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def obs(
    subject_id: str,
    slug: str | None,
    first: datetime | None,
    last: datetime | None,
    **attrs: str | None,
) -> SubjectObservation:
    values: dict[str, str | None] = {
        "subject_type": "user",
        "subject_display_name": None,
        "subject_pat_name": None,
        "subject_controller_name": None,
        "subject_external_identity_slug": None,
    }
    values.update(attrs)
    return SubjectObservation(
        subject_id=subject_id,
        subject_slug=slug,
        first_seen_at=first,
        last_seen_at=last,
        **values,
    )


# --------------------------------------------------------------------------- schemas and rows


def test_schemas_have_the_documented_columns_in_order() -> None:
    assert AUDIT_LOGS_SCHEMA.names == [
        "id",
        "action",
        "request_path",
        "resource_id",
        "resource_type",
        "resource_name",
        "resource_fqn",
        "parent_resource_id",
        "parent_resource_type",
        "tenant_name",
        "cluster_id",
        "workspace_id",
        "message",
        "created_at",
        "updated_at",
        "subject__subject_id",
        "subject__subject_type",
        "subject__subject_slug",
        "subject__subject_display_name",
        "subject__subject_pat_name",
        "subject__subject_controller_name",
        "subject__subject_external_identity_slug",
        "meta_data",
        "extra_fields",
    ]
    utc_us = pa.timestamp("us", tz="UTC")
    assert AUDIT_LOGS_SCHEMA.field("created_at").type == utc_us
    assert AUDIT_LOGS_SCHEMA.field("updated_at").type == utc_us
    assert not AUDIT_LOGS_SCHEMA.field("id").nullable
    assert {f.type for f in AUDIT_LOGS_SCHEMA if f.name not in ("created_at", "updated_at")} == {
        pa.string()
    }
    assert METADATA_SCHEMA.names == ["audit_log_id", "path", "value", "value_type"]
    assert SUBJECTS_SCHEMA.names == [
        "subject_id",
        "subject_type",
        "subject_slug",
        "subject_display_name",
        "subject_pat_name",
        "subject_controller_name",
        "subject_external_identity_slug",
        "first_seen_at",
        "last_seen_at",
    ]
    assert SUBJECTS_SCHEMA.field("first_seen_at").type == utc_us
    assert not SUBJECTS_SCHEMA.field("subject_id").nullable


def test_known_event_becomes_exact_rows() -> None:
    batch = normalize_events([event()])

    assert batch.audit_logs.schema == AUDIT_LOGS_SCHEMA
    assert batch.metadata.schema == METADATA_SCHEMA
    assert only(batch) == {
        "id": "evt-1",
        "action": "CREATE_DEPLOYMENT",
        "request_path": "/api/svc/v1/apps",
        "resource_id": "res-1",
        "resource_type": "application",
        "resource_name": "my-app",
        "resource_fqn": "acme:cluster-1:ws-1:my-app",
        "parent_resource_id": "ws-1",
        "parent_resource_type": "workspace",
        "tenant_name": "acme",
        "cluster_id": "cluster-1",
        "workspace_id": "ws-1",
        "message": "Deployed my-app",
        "created_at": datetime(2025, 3, 1, 10, 0, 0, 123000, tzinfo=UTC),
        "updated_at": datetime(2025, 3, 1, 10, 0, 1, tzinfo=UTC),
        "subject__subject_id": "u-1",
        "subject__subject_type": "user",
        "subject__subject_slug": "alice@example.com",
        "subject__subject_display_name": "Alice",
        "subject__subject_pat_name": None,
        "subject__subject_controller_name": None,
        "subject__subject_external_identity_slug": None,
        "meta_data": '{"diff":{"replicas":{"old":1,"new":3}}}',
        "extra_fields": None,
    }
    assert metadata_rows(batch) == [
        ("evt-1", "$.diff.replicas.old", "1", "integer"),
        ("evt-1", "$.diff.replicas.new", "3", "integer"),
    ]
    created = datetime(2025, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert batch.subjects == {
        "u-1": SubjectObservation(
            subject_id="u-1",
            subject_type="user",
            subject_slug="alice@example.com",
            subject_display_name="Alice",
            subject_pat_name=None,
            subject_controller_name=None,
            subject_external_identity_slug=None,
            first_seen_at=created,
            last_seen_at=created,
        )
    }
    assert batch.max_created_at == batch.min_created_at == created
    assert batch.skipped == 0


def test_rows_follow_event_order_then_document_order() -> None:
    batch = normalize_events(
        [
            event(id="b", metaData={"z": 1, "a": {"y": 2, "b": 3}}),
            event(id="a", metaData={}),
            event(id="c", metaData={"changes": [{"path": "spec.cpu"}, {"path": "spec.mem"}]}),
        ]
    )
    assert batch.audit_logs.column("id").to_pylist() == ["b", "a", "c"]
    assert batch.audit_logs.column("meta_data").to_pylist() == [
        '{"z":1,"a":{"y":2,"b":3}}',  # key order as received, not sorted
        "{}",
        '{"changes":[{"path":"spec.cpu"},{"path":"spec.mem"}]}',
    ]
    assert metadata_rows(batch) == [
        ("b", "$.z", "1", "integer"),
        ("b", "$.a.y", "2", "integer"),
        ("b", "$.a.b", "3", "integer"),
        ("c", "$.changes[0].path", '"spec.cpu"', "string"),
        ("c", "$.changes[1].path", '"spec.mem"', "string"),
    ]


def test_empty_batch() -> None:
    batch = normalize_events([])
    assert batch.audit_logs.num_rows == 0
    assert batch.audit_logs.schema == AUDIT_LOGS_SCHEMA
    assert batch.metadata.num_rows == 0
    assert batch.metadata.schema == METADATA_SCHEMA
    assert batch.subjects == {}
    assert (batch.max_created_at, batch.min_created_at, batch.skipped) == (None, None, 0)


# --------------------------------------------------------------------------- JSONPath leaves


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("plain", "$.plain"),
        ("_under_9", "$._under_9"),
        ("class", "$.class"),
        ("key.with.dots", '$["key.with.dots"]'),
        ("naïve key", '$["naïve key"]'),
        ("ключ", '$["ключ"]'),
        ('a"b', '$["a\\"b"]'),
        ("a\\b", '$["a\\\\b"]'),
        ("a b", '$["a b"]'),
        ("a[0]", '$["a[0]"]'),
        ("a']", '$["a\']"]'),
        ("0", '$["0"]'),
        ("9lives", '$["9lives"]'),
        ("", '$[""]'),
        ("$", '$["$"]'),
        ("line\nbreak", '$["line\\nbreak"]'),
        ("tab\there", '$["tab\\there"]'),
        ("\x01", '$["\\u0001"]'),
        ("🎉", '$["🎉"]'),
    ],
)
def test_path_escaping(key: str, path: str) -> None:
    assert leaves({key: 1}) == [(path, "1", "integer")]


def test_every_value_type() -> None:
    doc = {
        "s": "abc",
        "empty_s": "",
        "i": 3,
        "neg": -7,
        "f": 1.5,
        "whole_float": 2.0,
        "exp": 1e16,
        "t": True,
        "fa": False,
        "n": None,
        "o": {},
        "a": [],
    }
    assert leaves(doc) == [
        ("$.s", '"abc"', "string"),
        ("$.empty_s", '""', "string"),
        ("$.i", "3", "integer"),
        ("$.neg", "-7", "integer"),
        ("$.f", "1.5", "number"),
        ("$.whole_float", "2.0", "number"),
        ("$.exp", "1e+16", "number"),
        ("$.t", "true", "boolean"),
        ("$.fa", "false", "boolean"),
        ("$.n", "null", "null"),
        ("$.o", "{}", "object"),
        ("$.a", "[]", "array"),
    ]


def test_value_types_inside_arrays() -> None:
    assert leaves({"xs": ["a", 1, 2.5, True, None, {}, [], [False]]}) == [
        ("$.xs[0]", '"a"', "string"),
        ("$.xs[1]", "1", "integer"),
        ("$.xs[2]", "2.5", "number"),
        ("$.xs[3]", "true", "boolean"),
        ("$.xs[4]", "null", "null"),
        ("$.xs[5]", "{}", "object"),
        ("$.xs[6]", "[]", "array"),
        ("$.xs[7][0]", "false", "boolean"),
    ]


def test_string_values_are_json_text() -> None:
    assert leaves({"q": 'say "hi"\n', "u": "naïve ☃", "b": "back\\slash"}) == [
        ("$.q", '"say \\"hi\\"\\n"', "string"),
        ("$.u", '"naïve ☃"', "string"),
        ("$.b", '"back\\\\slash"', "string"),
    ]


def test_nested_empty_containers_are_leaves() -> None:
    doc = {"e": {"x": {}, "y": []}, "list": [{}, [], [[]]], "deep": {"a": {"b": {}}}}
    assert leaves(doc) == [
        ("$.e.x", "{}", "object"),
        ("$.e.y", "[]", "array"),
        ("$.list[0]", "{}", "object"),
        ("$.list[1]", "[]", "array"),
        ("$.list[2][0]", "[]", "array"),
        ("$.deep.a.b", "{}", "object"),
    ]


@pytest.mark.parametrize(
    ("root", "expected"),
    [
        ("abc", [("$", '"abc"', "string")]),
        (42, [("$", "42", "integer")]),
        (-0.5, [("$", "-0.5", "number")]),
        (True, [("$", "true", "boolean")]),
        (None, [("$", "null", "null")]),
        ({}, []),
        ([], []),
        ([1, {}], [("$[0]", "1", "integer"), ("$[1]", "{}", "object")]),
        ([[{"k": "v"}]], [("$[0][0].k", '"v"', "string")]),
    ],
)
def test_roots(root: Any, expected: list[tuple[str, str, str]]) -> None:
    assert leaves(root) == expected


def test_non_object_metadata_roots_in_a_batch() -> None:
    batch = normalize_events(
        [
            event(id="s", metaData="just text"),
            event(id="n", metaData=7),
            event(id="l", metaData=["a", {}]),
            event(id="e", metaData={}),
            event(id="z", metaData=None),
            {k: v for k, v in event(id="m").items() if k != "metaData"},
        ]
    )
    assert batch.audit_logs.column("meta_data").to_pylist() == [
        '"just text"',
        "7",
        '["a",{}]',
        "{}",
        None,
        None,
    ]
    assert metadata_rows(batch) == [
        ("s", "$", '"just text"', "string"),
        ("n", "$", "7", "integer"),
        ("l", "$[0]", '"a"', "string"),
        ("l", "$[1]", "{}", "object"),
    ]


def test_index_paths_beyond_the_precomputed_segments() -> None:
    rows = leaves({"xs": list(range(1100))})
    assert len(rows) == 1100
    assert rows[1099] == ("$.xs[1099]", "1099", "integer")
    assert rows[1023] == ("$.xs[1023]", "1023", "integer")


def test_non_finite_floats_become_json_null() -> None:
    # Not producible by a JSON parser, but by a caller; JSON has no spelling for them.
    doc = {"nan": float("nan"), "inf": float("inf"), "xs": [float("-inf")]}
    assert leaves(doc) == [
        ("$.nan", "null", "null"),
        ("$.inf", "null", "null"),
        ("$.xs[0]", "null", "null"),
    ]
    batch = normalize_events([event(metaData=doc)])
    assert only(batch)["meta_data"] == '{"nan":null,"inf":null,"xs":[null]}'


def test_huge_integers_round_trip() -> None:
    big = 2**80 + 1
    doc = {"big": big, "neg": -(2**70), "xs": [2**64, 2**63 - 1], "ok": 1}
    batch = normalize_events([event(metaData=doc)])
    text = only(batch)["meta_data"]
    assert json.loads(text) == doc
    assert text == (
        '{"big":1208925819614629174706177,"neg":-1180591620717411303424,'
        '"xs":[18446744073709551616,9223372036854775807],"ok":1}'
    )
    assert metadata_rows(batch) == [
        ("evt-1", "$.big", "1208925819614629174706177", "integer"),
        ("evt-1", "$.neg", "-1180591620717411303424", "integer"),
        ("evt-1", "$.xs[0]", "18446744073709551616", "integer"),
        ("evt-1", "$.xs[1]", "9223372036854775807", "integer"),
        ("evt-1", "$.ok", "1", "integer"),
    ]
    assert [json.loads(v) for _, _, v, _ in metadata_rows(batch)] == [
        big,
        -(2**70),
        2**64,
        2**63 - 1,
        1,
    ]


def test_huge_integer_as_a_scalar_field() -> None:
    row = only(normalize_events([event(resourceId=2**70)]))
    assert row["resource_id"] == "1180591620717411303424"


def test_two_megabyte_metadata() -> None:
    doc = {
        "blob": "x" * 1_600_000,
        "items": [{"i": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(10_000)],
    }
    batch = normalize_events([event(metaData=doc)])
    text = only(batch)["meta_data"]
    assert len(text) > 2_000_000
    assert json.loads(text) == doc
    rows = metadata_rows(batch)
    assert len(rows) == 1 + 10_000 * 4
    assert rows[0] == ("evt-1", "$.blob", '"' + "x" * 1_600_000 + '"', "string")
    assert rows[-4:] == [
        ("evt-1", "$.items[9999].i", "9999", "integer"),
        ("evt-1", "$.items[9999].name", '"item-9999"', "string"),
        ("evt-1", "$.items[9999].tags[0]", '"a"', "string"),
        ("evt-1", "$.items[9999].tags[1]", '"b"', "string"),
    ]


def test_unicode_is_kept_verbatim() -> None:
    doc = {"emoji": "🎉", "中文": "值", "rtl": "שלום", "zwj": "👩\u200d💻", "naïve": "é"}
    batch = normalize_events([event(metaData=doc, message="Déployé ✓", resourceName="アプリ")])
    row = only(batch)
    assert row["meta_data"] == (
        '{"emoji":"🎉","中文":"值","rtl":"שלום","zwj":"👩\u200d💻","naïve":"é"}'
    )
    assert (row["message"], row["resource_name"]) == ("Déployé ✓", "アプリ")
    assert metadata_rows(batch) == [
        ("evt-1", "$.emoji", '"🎉"', "string"),
        ("evt-1", '$["中文"]', '"值"', "string"),
        ("evt-1", "$.rtl", '"שלום"', "string"),
        ("evt-1", "$.zwj", '"👩\u200d💻"', "string"),
        ("evt-1", '$["naïve"]', '"é"', "string"),
    ]


def test_lone_surrogates_are_stored_as_their_json_escape() -> None:
    # stdlib json.loads turns "\ud800" into a lone surrogate, which UTF-8 cannot carry.
    parsed = json.loads(
        '{"id": "e\\ud800", "resourceName": "r\\udc00", "metaData": {"k\\ud800": "v"}}'
    )
    batch = normalize_events([parsed])
    row = only(batch)
    assert row["id"] == "e\\ud800"
    assert row["resource_name"] == "r\\udc00"
    assert json.loads(row["meta_data"]) == {"k\ud800": "v"}
    assert metadata_rows(batch) == [("e\\ud800", '$["k\\ud800"]', '"v"', "string")]
    assert batch.ids == ["e\\ud800"]


def test_a_batch_carries_its_rows_ids_in_row_order() -> None:
    events = [
        {"id": "b"},
        {"id": 7},
        {"id": "a"},
        {"id": "b", "action": "again"},
        {"id": None},
        json.loads('{"id": "s\\udc00"}'),
    ]
    batch = normalize_events(events)
    assert batch.ids == ["b", "7", "a", "s\\udc00"]
    assert batch.ids == batch.audit_logs.column("id").to_pylist()


def test_an_id_that_escapes_to_another_ids_text_is_that_id() -> None:
    # "\ud800" (a lone surrogate) is stored as the six characters of its escape, which is
    # the text of the second id: one stored id, so one row, the first
    events = json.loads('[{"id": "e\\ud800", "action": "A"}, {"id": "e\\\\ud800", "action": "B"}]')
    assert events[0]["id"] != events[1]["id"]
    batch = normalize_events(events)
    assert batch.ids == ["e\\ud800"] == batch.audit_logs.column("id").to_pylist()
    assert batch.audit_logs.column("action").to_pylist() == ["A"]


def test_same_key_with_different_types_across_events() -> None:
    values: list[Any] = [1, "1", 1.0, True, None, {}, [], {"a": 1}, [1]]
    batch = normalize_events([event(id=f"e{i}", metaData={"x": v}) for i, v in enumerate(values)])
    assert metadata_rows(batch) == [
        ("e0", "$.x", "1", "integer"),
        ("e1", "$.x", '"1"', "string"),
        ("e2", "$.x", "1.0", "number"),
        ("e3", "$.x", "true", "boolean"),
        ("e4", "$.x", "null", "null"),
        ("e5", "$.x", "{}", "object"),
        ("e6", "$.x", "[]", "array"),
        ("e7", "$.x.a", "1", "integer"),
        ("e8", "$.x[0]", "1", "integer"),
    ]


def _nest(depth: int, leaf: Any, key: str | None) -> Any:
    doc = leaf
    for _ in range(depth):
        doc = {key: doc} if key is not None else [doc]
    return doc


def test_deep_object_nesting_does_not_crash() -> None:
    doc = _nest(1000, 1, "a")
    batch = normalize_events([event(metaData=doc)])
    assert only(batch)["meta_data"] == '{"a":' * 1000 + "1" + "}" * 1000
    # The path stops at MAX_PATH_DEPTH segments; what is below is one leaf of JSON text.
    rest = 1000 - MAX_PATH_DEPTH
    assert metadata_rows(batch) == [
        ("evt-1", "$" + ".a" * MAX_PATH_DEPTH, '{"a":' * rest + "1" + "}" * rest, "object")
    ]


def test_deep_array_nesting_does_not_crash() -> None:
    doc = _nest(5000, "x", None)
    batch = normalize_events([event(metaData={"deep": doc})])
    assert only(batch)["meta_data"] == '{"deep":' + "[" * 5000 + '"x"' + "]" * 5000 + "}"
    rows = metadata_rows(batch)
    assert len(rows) == 1
    rest = 5000 - (MAX_PATH_DEPTH - 1)
    assert rows[0] == (
        "evt-1",
        "$.deep" + "[0]" * (MAX_PATH_DEPTH - 1),
        "[" * rest + '"x"' + "]" * rest,
        "array",
    )


def test_nesting_just_within_the_path_limit_is_fully_flattened() -> None:
    assert leaves(_nest(MAX_PATH_DEPTH, {}, "k")) == [("$" + ".k" * MAX_PATH_DEPTH, "{}", "object")]
    assert leaves(_nest(MAX_PATH_DEPTH, 5, "k")) == [("$" + ".k" * MAX_PATH_DEPTH, "5", "integer")]


def test_values_no_json_parser_produces_are_still_total() -> None:
    # Tuples, read-only mappings, non-str keys, foreign objects: a careless caller's values.
    doc = MappingProxyType(
        {"t": (1, 2), "m": MappingProxyType({"k": "v"}), 1: "int key", "obj": object}
    )
    assert leaves(doc) == [
        ("$.t[0]", "1", "integer"),
        ("$.t[1]", "2", "integer"),
        ("$.m.k", '"v"', "string"),
        ('$["1"]', '"int key"', "string"),
        ("$.obj", json.dumps(str(object)), "string"),
    ]
    row = only(normalize_events([event(metaData=doc)]))
    assert row["meta_data"] == (
        '{"t":[1,2],"m":{"k":"v"},"1":"int key","obj":' + json.dumps(str(object)) + "}"
    )


def test_a_document_that_cannot_be_walked_becomes_one_leaf(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An integer past the interpreter's int->str digit limit (no JSON parser yields one).
    huge = 10**5000
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = normalize_events([event(metaData={"huge": huge})])
    expected = '{"huge":1' + "0" * 5000 + "}"
    assert only(batch)["meta_data"] == expected
    assert metadata_rows(batch) == [("evt-1", "$", expected, "object")]
    assert "kept as one leaf" in caplog.text


def test_flattening_near_the_recursion_limit_does_not_raise() -> None:
    def at_depth(frames: int) -> list[tuple[str, str, str]]:
        return at_depth(frames - 1) if frames else leaves(_nest(100, 1, "a"))

    headroom = 60  # fewer frames than the 100 levels need
    rows = at_depth(sys.getrecursionlimit() - len(inspect.stack()) - headroom)
    assert rows == [("$", '{"a":' * 100 + "1" + "}" * 100, "object")]


# --------------------------------------------------------------------------- scalar fields


def test_missing_null_and_wrong_typed_fields() -> None:
    batch = normalize_events(
        [
            {"id": "bare"},
            event(
                id="odd",
                action=42,
                requestPath=None,
                resourceName={"a": [1, "x"]},
                message=["x", None],
                tenantName=True,
                clusterId=1.5,
                workspaceId="",
            ),
        ]
    )
    bare, odd = batch.audit_logs.to_pylist()
    assert bare == {name: None for name in AUDIT_LOGS_SCHEMA.names} | {"id": "bare"}
    assert (
        odd["action"],
        odd["request_path"],
        odd["resource_name"],
        odd["message"],
        odd["tenant_name"],
        odd["cluster_id"],
        odd["workspace_id"],
    ) == ("42", None, '{"a":[1,"x"]}', '["x",null]', "true", "1.5", "")
    assert batch.metadata.num_rows == 2  # only "odd" has metaData
    assert batch.subjects.keys() == {"u-1"}


def test_unknown_enum_values_are_kept_verbatim() -> None:
    subject = dict(SUBJECT, subjectType="robot")
    row = only(
        normalize_events(
            [
                event(
                    action="TELEPORT_CLUSTER",
                    resourceType="quantum-computer",
                    parentResourceType="Galaxy",
                    subject=subject,
                )
            ]
        )
    )
    assert (
        row["action"],
        row["resource_type"],
        row["parent_resource_type"],
        row["subject__subject_type"],
    ) == ("TELEPORT_CLUSTER", "quantum-computer", "Galaxy", "robot")


def test_unknown_top_level_fields_go_to_extra_fields() -> None:
    row = only(normalize_events([event(newField=1, nested={"a": [1, None]}, **{"odd key": "v"})]))
    assert row["extra_fields"] == '{"newField":1,"nested":{"a":[1,null]},"odd key":"v"}'
    assert row["action"] == "CREATE_DEPLOYMENT"


def test_a_mapping_that_is_not_a_dict_is_an_event_too() -> None:
    batch = normalize_events([MappingProxyType(event(extra=True))])
    assert only(batch)["id"] == "evt-1"
    assert only(batch)["extra_fields"] == '{"extra":true}'
    assert batch.metadata.num_rows == 2


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123Z", datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123456Z", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T10:00:00.5+00:00", datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T12:30:00+02:30", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T05:00:00-05:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.000001", datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=UTC)),
        ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (" 2024-05-01T10:00:00Z ", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ],
)
def test_timestamps_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)
    row = only(normalize_events([event(createdAt=text)]))
    assert row["created_at"] == expected


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "",
        "2024-13-01T00:00:00Z",
        "2024-05-01T10:00:00+25:00",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        1714557600,
        {"seconds": 1},
    ],
)
def test_unparseable_created_at_keeps_the_row(raw: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = normalize_events([event(createdAt=raw)])
    row = only(batch)
    assert row["created_at"] is None
    assert row["updated_at"] == datetime(2025, 3, 1, 10, 0, 1, tzinfo=UTC)
    # The raw value is the only record of when it happened: kept in extra_fields.
    assert json.loads(row["extra_fields"]) == {"createdAt": raw}
    assert batch.metadata.num_rows == 2
    assert batch.max_created_at is None and batch.min_created_at is None
    assert "createdAt" in caplog.text and "evt-1" in caplog.text


def test_missing_timestamps_are_null_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        row = only(normalize_events([event(createdAt=None, updatedAt=None)]))
    assert (row["created_at"], row["updated_at"], row["extra_fields"]) == (None, None, None)
    assert "createdAt" in caplog.text and "updatedAt" in caplog.text


def test_aware_datetime_objects_are_accepted() -> None:
    given_dt = datetime(2024, 5, 1, 12, tzinfo=UTC).astimezone(
        datetime.now(UTC).astimezone().tzinfo
    )
    assert parse_timestamp(given_dt) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_timestamp(datetime(2024, 5, 1, 12)) == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_min_and_max_created_at_ignore_nulls() -> None:
    batch = normalize_events(
        [
            event(id="a", createdAt="2025-01-02T00:00:00Z"),
            event(id="b", createdAt="bad"),
            event(id="c", createdAt="2025-01-01T00:00:00+01:00"),
            event(id="d", createdAt="2025-01-03T00:00:00Z"),
        ]
    )
    assert batch.min_created_at == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert batch.max_created_at == datetime(2025, 1, 3, tzinfo=UTC)


# --------------------------------------------------------------------------- ids


def test_events_without_a_usable_id_are_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_id = {k: v for k, v in event().items() if k != "id"}
    events: list[Any] = [
        event(id="keep-1"),
        no_id,
        event(id=None),
        event(id=""),
        event(id=True),
        event(id=1.5),
        event(id={"x": 1}),
        None,
        "not an event",
        [1, 2],
        event(id=42),
    ]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = normalize_events(events)
    assert batch.audit_logs.column("id").to_pylist() == ["keep-1", "42"]
    assert batch.skipped == 9
    assert batch.metadata.column("audit_log_id").to_pylist() == ["keep-1"] * 2 + ["42"] * 2
    assert "skipped 9 event(s) without a usable id" in caplog.text


# --------------------------------------------------------------------------- subjects


def test_subject_shapes() -> None:
    batch = normalize_events(
        [
            {k: v for k, v in event(id="missing").items() if k != "subject"},
            event(id="null", subject=None),
            event(id="text", subject="user:alice"),
            event(id="list", subject=["u-9"]),
            event(id="int-id", subject={"subjectId": 7, "subjectType": "user"}),
            event(id="no-id", subject={"subjectType": "team", "subjectSlug": "t"}),
            event(id="empty-id", subject={"subjectId": "", "subjectSlug": "e"}),
            event(id="obj-id", subject={"subjectId": {"x": 1}}),
            event(id="new-key", subject=dict(SUBJECT, subjectEmail="a@x.io", subjectSlug=5)),
        ]
    )
    rows = {r["id"]: r for r in batch.audit_logs.to_pylist()}
    subject_cols = [n for n in AUDIT_LOGS_SCHEMA.names if n.startswith("subject__")]
    for name in ("missing", "null", "text", "list"):
        assert all(rows[name][c] is None for c in subject_cols), name
    assert rows["missing"]["extra_fields"] is None
    assert rows["null"]["extra_fields"] is None
    # A subject that is not an object has no column to hold it: kept in extra_fields.
    assert rows["text"]["extra_fields"] == '{"subject":"user:alice"}'
    assert rows["list"]["extra_fields"] == '{"subject":["u-9"]}'
    assert rows["int-id"]["subject__subject_id"] == "7"
    assert rows["no-id"]["subject__subject_type"] == "team"
    assert rows["no-id"]["subject__subject_id"] is None
    assert rows["empty-id"]["subject__subject_id"] == ""
    assert rows["obj-id"]["subject__subject_id"] == '{"x":1}'
    # Subject fields the spec does not define are kept too.
    assert rows["new-key"]["extra_fields"] == '{"subject":{"subjectEmail":"a@x.io"}}'
    assert rows["new-key"]["subject__subject_slug"] == "5"
    assert rows["new-key"]["subject__subject_id"] == "u-1"

    created = datetime(2025, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert batch.subjects == {
        "7": SubjectObservation("7", "user", None, None, None, None, None, created, created),
        "u-1": SubjectObservation("u-1", "user", "5", "Alice", None, None, None, created, created),
    }


def _subject_event(event_id: str, created: str | None, slug: str) -> dict[str, Any]:
    return event(id=event_id, createdAt=created, subject=dict(SUBJECT, subjectSlug=slug))


def test_subject_attributes_come_from_the_latest_event() -> None:
    batch = normalize_events(
        [
            _subject_event("e3", "2025-01-01T00:00:00Z", "oldest"),
            _subject_event("e1", "2025-01-03T00:00:00Z", "latest"),
            _subject_event("e2", "2025-01-02T00:00:00Z", "middle"),
        ]
    )
    assert batch.subjects["u-1"] == obs(
        "u-1",
        "latest",
        ts("2025-01-01T00:00:00+00:00"),
        ts("2025-01-03T00:00:00+00:00"),
        subject_display_name="Alice",
    )


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_subject_ties_go_to_the_greatest_event_id(order: tuple[str, str]) -> None:
    same = "2025-01-01T00:00:00Z"
    events = {
        "a": _subject_event("evt-a", same, "from-a"),
        "b": _subject_event("evt-b", same, "from-b"),
    }
    batch = normalize_events([events[k] for k in order])
    assert batch.subjects["u-1"].subject_slug == "from-b"


def test_events_without_created_at_do_not_move_the_subject_span() -> None:
    batch = normalize_events(
        [
            _subject_event("e1", "2025-01-02T00:00:00Z", "dated"),
            _subject_event("e9", None, "undated"),  # greater id, but no time: not "latest"
            _subject_event("e0", "garbage", "garbled"),
        ]
    )
    day2 = ts("2025-01-02T00:00:00+00:00")
    assert batch.subjects["u-1"] == obs("u-1", "dated", day2, day2, subject_display_name="Alice")

    undated = normalize_events(
        [_subject_event("e1", None, "one"), _subject_event("e2", None, "two")]
    )
    assert undated.subjects["u-1"] == obs("u-1", "two", None, None, subject_display_name="Alice")


def test_subject_attribute_values_are_text() -> None:
    subject = {"subjectId": "u-2", "subjectType": 3, "subjectDisplayName": {"first": "Bo"}}
    batch = normalize_events([event(subject=subject)])
    observation = batch.subjects["u-2"]
    assert (observation.subject_type, observation.subject_display_name) == ("3", '{"first":"Bo"}')


# --------------------------------------------------------------------------- merging subjects

D1, D2, D3, D4 = (datetime(2025, 1, day, tzinfo=UTC) for day in (1, 2, 3, 4))
NEVER = datetime.min.replace(tzinfo=UTC)


def test_merge_adds_unknown_subjects() -> None:
    current: dict[str, SubjectObservation] = {}
    new = obs("u-1", "alice", D1, D2)
    assert merge_subject_observations(current, {"u-1": new}) == [new]
    assert current == {"u-1": new}


def test_merge_takes_attributes_from_the_newer_batch() -> None:
    current = {"u-1": obs("u-1", "alice", D1, D2)}
    changed = merge_subject_observations(current, {"u-1": obs("u-1", "alice2", D3, D4)})
    assert changed == [obs("u-1", "alice2", D1, D4)]
    assert current == {"u-1": obs("u-1", "alice2", D1, D4)}


def test_merge_of_an_older_batch_only_widens_the_span() -> None:
    current = {"u-1": obs("u-1", "renamed", D3, D4)}
    older = {"u-1": obs("u-1", "original", D1, D2)}
    changed = merge_subject_observations(current, older)
    assert changed == [obs("u-1", "renamed", D1, D4)]
    assert current["u-1"] == obs("u-1", "renamed", D1, D4)
    # The same old batch again changes nothing, so nothing is upserted.
    assert merge_subject_observations(current, older) == []


def test_merge_overlapping_batch_inside_the_span_changes_nothing() -> None:
    current = {"u-1": obs("u-1", "alice", D1, D4)}
    assert merge_subject_observations(current, {"u-1": obs("u-1", "stale", D2, D3)}) == []
    assert current["u-1"] == obs("u-1", "alice", D1, D4)


def test_merge_tie_on_last_seen_keeps_the_new_attributes() -> None:
    current = {"u-1": obs("u-1", "before", D1, D3)}
    changed = merge_subject_observations(current, {"u-1": obs("u-1", "after", D2, D3)})
    assert changed == [obs("u-1", "after", D1, D3)]


def test_merge_with_unknown_times() -> None:
    current = {"u-1": obs("u-1", "dated", D1, D2)}
    # An observation without times is older than any dated one.
    assert merge_subject_observations(current, {"u-1": obs("u-1", "undated", None, None)}) == []
    current = {"u-2": obs("u-2", "undated", None, None)}
    changed = merge_subject_observations(current, {"u-2": obs("u-2", "dated", D1, D2)})
    assert changed == [obs("u-2", "dated", D1, D2)]


def test_merge_only_returns_changed_subjects() -> None:
    same = obs("u-1", "alice", D1, D2)
    current = {"u-1": same, "u-2": obs("u-2", "bob", D1, D1)}
    changed = merge_subject_observations(
        current, {"u-1": same, "u-2": obs("u-2", "bob", D1, D3), "u-3": obs("u-3", "c", D2, D2)}
    )
    assert changed == [obs("u-2", "bob", D1, D3), obs("u-3", "c", D2, D2)]
    assert set(current) == {"u-1", "u-2", "u-3"}


def _merge_by_replace(
    current: dict[str, SubjectObservation], new: dict[str, SubjectObservation]
) -> list[SubjectObservation]:
    """The plain statement of the merge, which the fast one must agree with."""
    changed = []
    for observation in new.values():
        held = current.get(observation.subject_id)
        if held is None:
            merged = observation
        else:
            newer = (observation.last_seen_at or NEVER) >= (held.last_seen_at or NEVER)
            firsts = [t for t in (held.first_seen_at, observation.first_seen_at) if t]
            lasts = [t for t in (held.last_seen_at, observation.last_seen_at) if t]
            merged = dataclasses.replace(
                observation if newer else held,
                first_seen_at=min(firsts, default=None),
                last_seen_at=max(lasts, default=None),
            )
        if merged != held:
            current[observation.subject_id] = merged
            changed.append(merged)
    return changed


_days = st.one_of(st.none(), st.sampled_from([D1, D2, D3, D4]))
_observations = st.builds(
    lambda subject_id, slug, a, b: obs(
        subject_id, slug, *((a, b) if a is None or b is None or a <= b else (b, a))
    ),
    st.sampled_from(["u-1", "u-2", "u-3"]),
    st.sampled_from(["alice", "bob", None]),
    _days,
    _days,
)


@given(st.lists(st.dictionaries(st.sampled_from(["u-1", "u-2", "u-3"]), _observations)))
def test_merge_agrees_with_its_plain_statement(
    batches: list[dict[str, SubjectObservation]],
) -> None:
    fast: dict[str, SubjectObservation] = {}
    plain: dict[str, SubjectObservation] = {}
    for batch in batches:
        # keyed by their own ids, as a batch's subjects are
        batch = {o.subject_id: o for o in batch.values()}
        assert merge_subject_observations(fast, batch) == _merge_by_replace(plain, batch)
        assert fast == plain


def test_batches_folded_out_of_order_agree_with_in_order() -> None:
    early = normalize_events([_subject_event("e1", "2025-01-01T00:00:00Z", "early")])
    late = normalize_events([_subject_event("e2", "2025-02-01T00:00:00Z", "late")])
    in_order: dict[str, SubjectObservation] = {}
    out_of_order: dict[str, SubjectObservation] = {}
    for batch in (early, late):
        merge_subject_observations(in_order, batch.subjects)
    for batch in (late, early):
        merge_subject_observations(out_of_order, batch.subjects)
    assert in_order == out_of_order
    assert in_order["u-1"].subject_slug == "late"
    assert in_order["u-1"].first_seen_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_subjects_table() -> None:
    table = subjects_table(
        [
            obs("u-1", "alice", D1, D2, subject_display_name="Alice"),
            obs("u-2", None, None, None, subject_type=None),
        ]
    )
    assert table.schema == SUBJECTS_SCHEMA
    assert table.to_pylist() == [
        {
            "subject_id": "u-1",
            "subject_type": "user",
            "subject_slug": "alice",
            "subject_display_name": "Alice",
            "subject_pat_name": None,
            "subject_controller_name": None,
            "subject_external_identity_slug": None,
            "first_seen_at": D1,
            "last_seen_at": D2,
        },
        {
            "subject_id": "u-2",
            "subject_type": None,
            "subject_slug": None,
            "subject_display_name": None,
            "subject_pat_name": None,
            "subject_controller_name": None,
            "subject_external_identity_slug": None,
            "first_seen_at": None,
            "last_seen_at": None,
        },
    ]
    assert subjects_table([]).schema == SUBJECTS_SCHEMA


# --------------------------------------------------------------------------- properties

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"\[(\d+)\]")
_DECODER = json.JSONDecoder()


def parse_path(path: str) -> list[str | int]:
    """The segments of a path written by `jsonpath_leaves`; fails on anything ambiguous."""
    assert path.startswith("$")
    segments: list[str | int] = []
    i = 1
    while i < len(path):
        if path[i] == ".":
            match = _IDENT.match(path, i + 1)
            assert match is not None, path
            segments.append(match.group())
            i = match.end()
        elif path.startswith('["', i):
            key, end = _DECODER.raw_decode(path, i + 1)
            assert isinstance(key, str) and path[end] == "]", path
            segments.append(key)
            i = end + 1
        else:
            match = _INDEX.match(path, i)
            assert match is not None, path
            segments.append(int(match.group(1)))
            i = match.end()
    return segments


def rebuild(rows: Iterable[tuple[str, str, str]]) -> Any:
    """The document whose leaves are `rows`; an empty root has no leaves, so none gives {}."""
    root: Any = None
    for path, value, _ in rows:
        segments = parse_path(path)
        leaf = json.loads(value)
        if not segments:
            return leaf
        if root is None:
            root = [] if isinstance(segments[0], int) else {}
        node = root
        for segment, following in itertools.pairwise(segments):
            fresh: Any = [] if isinstance(following, int) else {}
            if isinstance(segment, int):
                assert isinstance(node, list)
                if segment == len(node):
                    node.append(fresh)
            else:
                assert isinstance(node, dict)
                node.setdefault(segment, fresh)
            node = node[segment]
        last = segments[-1]
        if isinstance(last, int):
            assert isinstance(node, list) and last == len(node), path
            node.append(leaf)
        else:
            assert isinstance(node, dict) and last not in node, path
            node[last] = leaf
    return {} if root is None else root


_TYPES_OF = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(
    st.text(alphabet=st.sampled_from('ab_.[]"\\ 0$é🎉\n'), max_size=6) | st.text(max_size=6),
    json_values,
    max_size=5,
)


@settings(database=None, max_examples=200, deadline=None)
@given(json_objects)
def test_leaves_rebuild_the_document(doc: dict[str, Any]) -> None:
    rows = leaves(doc)
    assert json.dumps(rebuild(rows)) == json.dumps(doc)  # type-exact: 1 != 1.0 != true
    for _, value, value_type in rows:
        parsed = json.loads(value)
        if value_type == "object":
            assert parsed == {}
        elif value_type == "array":
            assert parsed == []
        else:
            assert _TYPES_OF[type(parsed)] == value_type


@settings(
    database=None, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(sorted(event())) | st.text(max_size=5), json_values, max_size=8
        ),
        max_size=5,
    )
)
def test_any_json_events_normalize_without_error(events: list[dict[str, Any]]) -> None:
    batch = normalize_events(events)
    with_id = [
        e
        for e in events
        if (isinstance(e.get("id"), str) and e["id"])
        or (isinstance(e.get("id"), int) and not isinstance(e.get("id"), bool))
    ]
    usable: list[dict[str, Any]] = []  # an id met again keeps its first event
    for e in with_id:
        if str(e["id"]) not in {str(u["id"]) for u in usable}:
            usable.append(e)
    assert batch.audit_logs.num_rows == len(usable)
    assert batch.skipped == len(events) - len(with_id)
    assert batch.audit_logs.column("id").to_pylist() == [str(e["id"]) for e in usable]
    for row, source in zip(batch.audit_logs.to_pylist(), usable, strict=True):
        meta = source.get("metaData")
        if meta is None:
            assert row["meta_data"] is None
        else:
            assert json.dumps(json.loads(row["meta_data"])) == json.dumps(meta)


def test_an_id_repeated_on_a_page_keeps_its_first_event_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Merges skip dlt's de-duplication, so a batch must hold each id once: the same row served
    twice, or `7` and `"7"`, which are one key."""
    events = [
        {"id": "a", "action": "FIRST", "metaData": {"x": 1}},
        {"id": "b", "action": "OTHER", "metaData": {"y": [1, 2]}},
        {"id": "a", "action": "SECOND", "metaData": {"z": 3}},
        {"id": 7, "action": "INT", "metaData": {"k": "int"}},
        {"id": "7", "action": "STR", "metaData": {"k": "str"}},
    ]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batch = normalize_events(events)
    logs = batch.audit_logs.select(["id", "action"]).to_pylist()
    assert logs == [
        {"id": "a", "action": "FIRST"},
        {"id": "b", "action": "OTHER"},
        {"id": "7", "action": "INT"},
    ]
    leaves = batch.metadata.select(["audit_log_id", "path", "value"]).to_pylist()
    assert leaves == [
        {"audit_log_id": "a", "path": "$.x", "value": "1"},
        {"audit_log_id": "b", "path": "$.y[0]", "value": "1"},
        {"audit_log_id": "b", "path": "$.y[1]", "value": "2"},
        {"audit_log_id": "7", "path": "$.k", "value": '"int"'},
    ]
    assert "2 event(s) repeat an id" in caplog.text


def test_text_columns_come_out_the_same_converted_at_once_or_column_by_column() -> None:
    """Plain dict events go through Arrow's one-pass conversion; any other mapping takes the
    per-column path. Both must give the same table, row for row: for a realistic batch, and
    for each awkward event alone (one that Arrow refuses falls back, whole)."""
    from tfy_audit._service.rows import _text_columns_at_once
    from tfy_audit.simulator.history import generate_history
    from tfy_audit.simulator.odd import odd_events

    realistic = generate_history(2_000, days=3, seed=4, end=datetime(2026, 5, 1, tzinfo=UTC))
    odd = odd_events(datetime(2026, 4, 30, 12, tzinfo=UTC))
    # the fast path is the one compared: every batch below takes it
    assert all(_text_columns_at_once(b) is not None for b in [realistic, *([e] for e in odd)])
    # and what it cannot take exactly, it leaves to the per-column path
    for refused in (
        event(id="n", action=5),
        event(id="o", resourceName={"a": 1}),
        event(id="s", subject={"subjectId": 7}),
        event(id="u", message="\ud800"),
        event(id="l", subject=["u-1"]),
    ):
        assert _text_columns_at_once([refused]) is None, refused["id"]
    for batch in [realistic, *([e] for e in odd)]:
        at_once = normalize_events(batch)
        by_column = normalize_events([MappingProxyType(e) for e in batch])
        assert at_once.audit_logs.equals(by_column.audit_logs)
        assert at_once.metadata.equals(by_column.metadata)
        assert at_once.subjects == by_column.subjects


def test_a_tuple_subject_is_not_read_by_position() -> None:
    """Arrow would convert a tuple as a struct, field by field; a subject that is not an object
    has no columns, whichever way it came."""
    batch = normalize_events([event(id="t", subject=("u-1", "user", "alice"))])
    row = batch.audit_logs.to_pylist()[0]
    assert all(row[c] is None for c in AUDIT_LOGS_SCHEMA.names if c.startswith("subject__"))
    assert json.loads(row["extra_fields"]) == {"subject": ["u-1", "user", "alice"]}


def test_dropping_ids_drops_their_rows_and_leaves_and_keeps_the_rest_aligned() -> None:
    batch = normalize_events(
        [
            {"id": "a", "metaData": {"k": 1}},
            {"id": "b", "metaData": {"k": [2, 3]}},
            {"id": "c", "metaData": {"k": 4}},
        ]
    )
    kept = batch.without({"b", "not-on-the-page"})
    assert kept.ids == ["a", "c"] == kept.audit_logs.column("id").to_pylist()
    assert kept.metadata.column("audit_log_id").to_pylist() == ["a", "c"]
    assert kept.subjects == batch.subjects


def test_nesting_past_the_leaf_depth_is_recorded_and_meta_data_kept_verbatim() -> None:
    batch = normalize_events([event(metaData=_nest(1000, 1, "a")), event(id="flat", metaData={})])
    [record] = batch.anomalies
    assert (record.kind, record.action, record.event_id, record.field_path) == (
        "deep_nesting",
        "kept_as_json_text",
        "evt-1",
        "$.metaData" + ".a" * MAX_PATH_DEPTH,
    )
    assert record.detail == (
        f"1 subtree(s) nested past {MAX_PATH_DEPTH} levels kept as JSON text in "
        "audit_log_metadata.value"
    )


def test_nesting_past_the_text_depth_is_kept_as_a_json_string_at_its_path() -> None:
    depth = MAX_TEXT_DEPTH + 5
    doc = {"ok": 1, "deep": _nest(depth, "x", None)}
    batch = normalize_events([event(metaData=doc)])
    text = only(batch)["meta_data"]
    # verbatim down to MAX_TEXT_DEPTH levels, then the rest as a JSON string of its JSON text
    rest = depth - MAX_TEXT_DEPTH + 1
    inner = "[" * rest + '"x"' + "]" * rest
    keep = MAX_TEXT_DEPTH - 1  # "deep"'s arrays above the cut; with metaData's object, the limit
    assert text == '{"ok":1,"deep":' + "[" * keep + json.dumps(inner) + "]" * keep + "}"
    [record] = batch.anomalies
    assert record.kind == "deep_nesting"
    assert record.field_path == "$.metaData.deep" + "[0]" * (MAX_PATH_DEPTH - 1)
    assert f"1 past {MAX_TEXT_DEPTH} levels kept as JSON strings in meta_data" in record.detail


def test_an_unknown_field_nested_past_the_text_depth_is_kept_as_a_json_string() -> None:
    depth = MAX_TEXT_DEPTH + 3
    batch = normalize_events([event(newField=_nest(depth, 1, None), other="kept")])
    kept = MAX_TEXT_DEPTH - 1  # with the object of the fields, the limit
    rest = depth - kept
    inner = "[" * rest + "1" + "]" * rest
    assert only(batch)["extra_fields"] == (
        '{"newField":' + "[" * kept + json.dumps(inner) + "]" * kept + ',"other":"kept"}'
    )
    [record] = batch.anomalies
    assert (record.kind, record.action, record.event_id, record.field_path) == (
        "deep_nesting",
        "kept_as_json_text",
        "evt-1",
        "$.newField",
    )
