"""`tfy-audit sql`: one read-only query on the dataset, whatever the destination.

- DuckDB: the file opened `read_only`, or the snapshot `sync --publish` last published when
  its pointer file (`.<db file name>.published.json` beside the database, holding
  `{"path": ..., "published_at": ...}`) names a file that exists: a query then never waits for
  a sync, nor a sync for it.
- PostgreSQL: a `READ ONLY` transaction, rolled back, with the dataset's schema on the
  `search_path`.
- filesystem (Parquet or Delta): the tables read into an in-memory DuckDB by the reader
  `verify` and `report` use (`lakehouse.connect`), with `_dlt_loads` and the analysis views;
  a query that names only tables reads only those.

On every engine the dataset's tables and views answer to their plain names, and a statement
that is not one read query (a `SELECT`, `WITH ... SELECT`, `SHOW`, `DESCRIBE`, `EXPLAIN`) is
refused before it runs, as DuckDB's parser classifies it; the engines' own read-only modes
refuse what gets past that. A DuckDB connection here reads no file but the database and
downloads nothing (`enable_external_access` off, then locked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import duckdb

from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import DestinationOptions, validate_target
from tfy_audit._core.redact import clean
from tfy_audit._core.settings import AUDIT_LOGS_TABLE
from tfy_audit._warehouse.adapter import QueryRoute, warehouse_for, warehouse_of
from tfy_audit._warehouse.sql_text import sql_string

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

# the destinations whose read-only mode the command relies on (adapter.QueryRoute)
ENGINES: Final = ("duckdb", "postgres", "filesystem")

_READ_STATEMENTS: Final = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than `limit` were there
    source: str  # what was read: a DuckDB file, its published snapshot, a dataset


def read_only_statement(sql: str) -> str:
    """`sql` as one read statement (a trailing `;` dropped); `UsageError` for anything else:
    no statement, several, a write, a setting, an `ATTACH`, `INSTALL` or `COPY`."""
    try:
        statements = duckdb.connect(config={"enable_external_access": False}).extract_statements(
            sql
        )
    except duckdb.Error as exc:
        raise UsageError(f"the query does not parse: {_first_line(exc)}") from exc
    if not statements:
        raise UsageError('the query is empty; pass one, e.g. tfy-audit sql "select 1"')
    if len(statements) > 1:
        raise UsageError(
            f"the query holds {len(statements)} statements; tfy-audit sql runs one read query "
            "at a time"
        )
    (statement,) = statements
    if statement.type not in _READ_STATEMENTS:
        kind = statement.type.name
        raise UsageError(
            f"tfy-audit sql only reads: a {kind} statement is refused; write a SELECT (the "
            "dataset is changed by tfy-audit sync only)"
        )
    return sql.strip().rstrip(";").strip()


def published_snapshot(db: str | Path) -> Path | None:
    """The snapshot the pointer file beside `db` names, if that file exists; else None."""
    path = Path(db).expanduser()
    pointer = path.with_name(f".{path.name}.published.json")
    try:
        document = json.loads(pointer.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the snapshot pointer %s (%s)", pointer, _first_line(exc))
        return None
    named = document.get("path") if isinstance(document, dict) else None
    if not isinstance(named, str) or not named:
        logger.warning("ignoring the snapshot pointer %s: it names no path", pointer)
        return None
    snapshot = Path(named).expanduser()
    if not snapshot.is_absolute():
        snapshot = pointer.parent / snapshot
    if not snapshot.is_file():
        logger.warning("the snapshot %s named by %s is gone; reading %s", snapshot, pointer, db)
        return None
    return snapshot


def run_query(target: DestinationOptions, sql: str, *, limit: int) -> QueryResult:
    """The first `limit` rows of `sql` (all of them for 0) on the target's dataset."""
    if limit < 0:
        raise UsageError(f"--limit {limit} is negative; pass a row count, or 0 for all rows")
    statement = read_only_statement(sql)
    validate_target(target)
    route = warehouse_for(target).query_route
    if route is None:
        raise UsageError(
            f"tfy-audit sql reads {', '.join(ENGINES)} destinations, not {target.destination}; "
            "query that warehouse with its own client"
        )
    if route == "postgres":
        return _postgres(target, statement, limit)
    with _duckdb(target, statement, route) as (con, source):
        try:
            cursor = con.execute(statement)
            columns = [str(d[0]) for d in cursor.description or ()]
            rows = cursor.fetchmany(limit + 1) if limit else cursor.fetchall()
        except duckdb.Error as exc:
            failed = f"the query failed: {_first_line(exc)}"
            missing = isinstance(exc, duckdb.CatalogException) and route == "duckdb file"
            if missing and not _synced(con, target.dataset):
                failed = (
                    f"nothing was synced into dataset {target.dataset!r} of {source} yet, so "
                    f"{failed}; run `tfy-audit sync` first, or pass the --dataset/--db it used"
                )
            raise UsageError(failed) from exc
    return _result(columns, rows, limit, source)


def _result(columns: list[str], rows: list[Any], limit: int, source: str) -> QueryResult:
    truncated = bool(limit) and len(rows) > limit
    kept = [tuple(r) for r in (rows[:limit] if truncated else rows)]
    return QueryResult(columns, kept, truncated, source)


@contextmanager
def _duckdb(
    target: DestinationOptions, statement: str, route: QueryRoute
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB connection on the dataset (a DuckDB file, or files read into memory), its
    schema the default one, made unable to reach any file but its database; and what it
    reads."""
    from tfy_audit._warehouse.destination import restored_pipeline
    from tfy_audit._warehouse.lakehouse import OFFLINE_DUCKDB, connect

    if route == "duckdb file":
        db = Path(target.db).expanduser()
        if not db.exists():
            raise UsageError(
                f"{target.db} does not exist; run `tfy-audit sync` first, or pass the --db it wrote"
            )
        snapshot = published_snapshot(db)
        path = snapshot or db
        source = f"{path} (published snapshot)" if snapshot else str(path)
        con = duckdb.connect(str(path), read_only=True, config=OFFLINE_DUCKDB)
        try:
            _use_dataset(con, target.dataset, source)
            _lock_down(con)
            yield con, source
        finally:
            con.close()
        return
    with restored_pipeline(target) as pipeline:
        if not warehouse_of(pipeline).own_reader(pipeline):
            raise UsageError(
                f"dataset {target.dataset} holds files other than Parquet or Delta (written by "
                "dlt with its defaults, not by tfy-audit sync); query it with dlt's dataset()"
            )
        con = connect(pipeline, _only_tables(pipeline, statement))
        try:
            _lock_down(con)
            yield con, f"{target.destination} dataset {target.dataset}"
        finally:
            con.close()


def _only_tables(pipeline: dlt.Pipeline, statement: str) -> list[str] | None:
    """The dataset's tables the statement names, when it names nothing else of the dataset (a
    view, `_dlt_loads`): only those are read into memory. None: read them all."""
    from tfy_audit._warehouse.views import VIEW_NAMES

    named = duckdb.connect(config={"enable_external_access": False}).get_table_names(statement)
    tables = {str(t["name"]) for t in pipeline.default_schema.data_tables()}
    if not named or named & {*VIEW_NAMES, "_dlt_loads"} or not named & tables:
        return None
    return sorted(named & tables)


def _use_dataset(con: duckdb.DuckDBPyConnection, dataset: str, source: str) -> None:
    found = con.execute(
        "select 1 from information_schema.schemata where schema_name = ?", [dataset]
    ).fetchall()
    if not found:
        raise UsageError(f"{source} holds no dataset {dataset!r}; pass the --dataset of your syncs")
    con.execute("SET schema = " + sql_string(dataset))


def _synced(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    """Whether a sync loaded events into the dataset (a run that failed at once, refused for
    its key, leaves only its run record)."""
    found = con.execute(
        "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
        [dataset, AUDIT_LOGS_TABLE],
    ).fetchall()
    return bool(found)


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _postgres(target: DestinationOptions, statement: str, limit: int) -> QueryResult:
    """In a READ ONLY transaction, rolled back; dlt's client puts the dataset's schema first
    on the `search_path`."""
    from tfy_audit._warehouse.destination import restored_pipeline

    with restored_pipeline(target) as pipeline, pipeline.sql_client() as client:
        connection = client.native_connection
        connection.autocommit = False
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")
                try:
                    cursor.execute(statement)
                except Exception as exc:
                    raise UsageError(f"the query failed: {_first_line(exc)}") from exc
                columns = [str(d[0]) for d in cursor.description or ()]
                rows = cursor.fetchmany(limit + 1) if limit else cursor.fetchall()
        finally:
            connection.rollback()
            connection.autocommit = True
    return _result(columns, list(rows), limit, f"postgres dataset {target.dataset}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return clean(text[0] if text else type(exc).__name__, 300)


# -- output: the CLI prints these ---------------------------------------------------------

_CELL_WIDTH: Final = 80  # a table cell is cut here; csv and json keep every character


def plain(value: Any) -> Any:
    """A value as JSON has it: times in ISO 8601, decimals and other scalars as text, nested
    values (PostgreSQL's jsonb) as they are."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict | list):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    return str(value)


def _text(value: Any) -> str:
    shown = plain(value)
    if isinstance(shown, dict | list):
        return json.dumps(shown, ensure_ascii=False)
    return "" if shown is None else str(shown)


def format_table(result: QueryResult) -> str:
    """An aligned table: a header, a rule, a row a line (`NULL` for null, cells cut to one
    line of at most `_CELL_WIDTH` characters), numbers aligned right."""
    header = [clean(c, _CELL_WIDTH) for c in result.columns]
    cells = [
        ["NULL" if v is None else clean(_text(v), _CELL_WIDTH) for v in row] for row in result.rows
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    numeric = [
        bool(result.rows)
        and all(isinstance(r[i], int | float) or r[i] is None for r in result.rows)
        for i in range(len(header))
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines.extend(line(r) for r in cells)
    return "\n".join(lines)


def format_csv(result: QueryResult) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([_text(v) for v in row] for row in result.rows)
    return out.getvalue().rstrip("\n")


def records(result: QueryResult) -> list[dict[str, Any]]:
    """The rows as JSON objects by column name (a repeated name keeps its last value)."""
    return [{c: plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows]


def format_json(result: QueryResult) -> str:
    return json.dumps(records(result), ensure_ascii=False, indent=2, default=str)
