"""The tables a page becomes (`audit_logs`, `audit_log_metadata`, `subjects`): their Arrow
schemas, the event key each column holds, and the one way a string column is built."""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa

from tfy_audit._service.json_text import as_text, utf8_safe

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
STRING: Final = pa.string()


# (column, event key) of the top-level string fields, in table order.
TEXT_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("action", "action"),
    ("request_path", "requestPath"),
    ("resource_id", "resourceId"),
    ("resource_type", "resourceType"),
    ("resource_name", "resourceName"),
    ("resource_fqn", "resourceFqn"),
    ("parent_resource_id", "parentResourceId"),
    ("parent_resource_type", "parentResourceType"),
    ("tenant_name", "tenantName"),
    ("cluster_id", "clusterId"),
    ("workspace_id", "workspaceId"),
    ("message", "message"),
)

# (attribute / column suffix, subject key); `subjectId` is handled apart as the subject's key.
SUBJECT_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("subject_type", "subjectType"),
    ("subject_slug", "subjectSlug"),
    ("subject_display_name", "subjectDisplayName"),
    ("subject_pat_name", "subjectPatName"),
    ("subject_controller_name", "subjectControllerName"),
    ("subject_external_identity_slug", "subjectExternalIdentitySlug"),
)

# Every property of the spec's ActivityLog / Subject; anything else is an addition of the
# service and goes to `extra_fields`.
EVENT_KEYS: Final = frozenset(
    {"id", "subject", "metaData", "createdAt", "updatedAt"} | {k for _, k in TEXT_FIELDS}
)
SUBJECT_KEYS: Final = frozenset({"subjectId"} | {k for _, k in SUBJECT_FIELDS})

# Each `audit_logs` column as the JSONPath of what it holds in the event (`extra_fields`: the
# keys no column holds, hence the whole event), for the records of anomalies.py.
COLUMN_FIELDS: Final[dict[str, str]] = {
    "id": "$.id",
    **{column: f"$.{key}" for column, key in TEXT_FIELDS},
    "subject__subject_id": "$.subject.subjectId",
    **{f"subject__{attr}": f"$.subject.{key}" for attr, key in SUBJECT_FIELDS},
    "meta_data": "$.metaData",
    "extra_fields": "$",
}

AUDIT_LOGS_SCHEMA: Final = pa.schema(
    [
        pa.field("id", STRING, nullable=False),
        *(pa.field(col, STRING) for col, _ in TEXT_FIELDS),
        pa.field("created_at", TIMESTAMP),
        pa.field("updated_at", TIMESTAMP),
        pa.field("subject__subject_id", STRING),
        *(pa.field(f"subject__{attr}", STRING) for attr, _ in SUBJECT_FIELDS),
        pa.field("meta_data", STRING),
        pa.field("extra_fields", STRING),
    ]
)

METADATA_SCHEMA: Final = pa.schema(
    [
        pa.field("audit_log_id", STRING, nullable=False),
        pa.field("path", STRING, nullable=False),
        pa.field("value", STRING, nullable=False),
        pa.field("value_type", STRING, nullable=False),
    ]
)

SUBJECTS_SCHEMA: Final = pa.schema(
    [
        pa.field("subject_id", STRING, nullable=False),
        *(pa.field(attr, STRING) for attr, _ in SUBJECT_FIELDS),
        pa.field("first_seen_at", TIMESTAMP),
        pa.field("last_seen_at", TIMESTAMP),
    ]
)


def string_array(values: list[Any]) -> pa.Array:
    """A string column; non-strings become their JSON text, lone surrogates their escapes."""
    try:
        return pa.array(values, type=STRING)
    except (pa.ArrowException, TypeError, ValueError):
        # Rare: a value of another type, or text Arrow cannot encode. Repair only then.
        return pa.array([utf8_safe(as_text(v)) for v in values], type=STRING)
