"""The report's SQL: the SELECTs in `sql/`, filled in, and run through a dlt SQL client.

Each file in `sql/` is one SELECT with `$name` placeholders (`string.Template`). The values
put in are table names the client quoted, the FROM clause of a view's SELECT, timestamp
literals, limits and names the code controls (a severity tier, a validated time zone): never
text from the service. The SQL is what DuckDB and PostgreSQL both accept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any, Final

from dlt.destinations.exceptions import DatabaseUndefinedRelation

from tfy_audit._core.times import utc
from tfy_audit._report.data import Row
from tfy_audit._warehouse.sql_text import sql_timestamp
from tfy_audit._warehouse.view_params import ViewParams
from tfy_audit._warehouse.views import view_select

AUDIT_LOGS: Final = "audit_logs"
SYNC_WINDOWS: Final = "sync_windows"
DLT_LOADS: Final = "_dlt_loads"

_SQL_PACKAGE: Final = "tfy_audit._report.sql"


@functools.cache
def _template(name: str) -> Template:
    text = resources.files(_SQL_PACKAGE).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return Template(text)


def query(name: str, **values: object) -> str:
    """The SELECT of `sql/<name>.sql` with its placeholders filled; a missing one is a
    KeyError rather than SQL with a hole in it."""
    return _template(name).substitute({key: str(value) for key, value in values.items()})


def rows(client: Any, sql: str) -> list[Row]:
    result = client.execute_sql(sql)
    return [tuple(row) for row in result] if result else []


def one(client: Any, sql: str) -> Row:
    found = rows(client, sql)
    return found[0] if found else ()


def grouped(client: Any, sql: str) -> dict[str, int]:
    return {str(key): as_int(n) for key, n in rows(client, sql)}


def exists(client: Any, table: str) -> bool:
    """Whether the table can be read: a dataset may predate `sync_windows`, or be empty."""
    try:
        client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(table)} WHERE 1 = 0")
    except DatabaseUndefinedRelation:
        return False
    return True


def as_int(value: Any) -> int:
    # PostgreSQL's sum() of bigint is numeric (a Decimal here); None when there are no rows
    return int(value) if value is not None else 0


def utc_rows(found: Iterable[Row]) -> list[Row]:
    return [tuple(utc(v) if isinstance(v, datetime) else v for v in row) for row in found]


def between(lo: datetime, hi: datetime, column: str = "created_at") -> str:
    return f"{column} >= {sql_timestamp(lo)} AND {column} < {sql_timestamp(hi)}"


class Sources:
    """The FROM clause of each view's SELECT (and the raw table), for one dataset."""

    def __init__(self, client: Any, params: ViewParams) -> None:
        dataset = client.fully_qualified_dataset_name()
        self.logs = client.make_qualified_table_name(AUDIT_LOGS)

        def sub(name: str) -> str:
            return f"(\n{view_select(name, dataset, params)}\n) AS v"

        self.sensitive = sub("sensitive_actions")
        self.subjects = sub("subject_activity")
        self.access = sub("access_changes")
        self.external = sub("external_activity")
        self.tokens = sub("token_usage")
        self.off_hours = sub("off_hours_activity")
        self.scope = sub("workspace_activity")
