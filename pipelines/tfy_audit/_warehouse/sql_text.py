"""Values and names written into SQL text, for the statements a driver's parameters cannot
reach: DDL (`ATTACH`, `SET schema`), the `VALUES` of a view, a query through dlt's dataset.
Both DuckDB and PostgreSQL read them the same way (standard SQL quoting, doubled quotes)."""

from __future__ import annotations

from datetime import UTC, datetime


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_timestamp(value: datetime) -> str:
    """An aware `value` as a timestamptz literal, the same instant on both engines."""
    return f"CAST('{value.astimezone(UTC).isoformat()}' AS TIMESTAMP WITH TIME ZONE)"


def sql_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (a schema, table, view or column)."""
    return '"' + name.replace('"', '""') + '"'
