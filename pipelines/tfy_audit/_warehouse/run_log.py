"""The run history in the warehouse (`sync_runs`): one row per `tfy-audit sync` run.

Each run's row is written once the run is over, so its figures are final (a row written with
the last chunk could not hold that chunk's own figures). On DuckDB and PostgreSQL it is written
by SQL like `verify_runs` (verify_log.py): one statement on the connection the sync holds,
where a dlt load of its own would cost a whole extract-normalize-load cycle; elsewhere (the
filesystem, ...) it goes through dlt as a load of its own, into the sync's schema. It is a
record for people and dashboards, and never what the sync decides anything from.

A run can fail where the destination cannot be reached, or be killed, so its row is first
written to a pending record in dlt's working dir (beside the pipeline's lock, and only while
the lock is held): at the start as `interrupted` (what a run killed with no chance to clean up
stays), then with its outcome. Pending records are written with the next row that reaches the
destination (the next run's, or this run's own at failure where the destination answered), and
deleted once written; a record written twice (a kill between the two) stays one row by SQL,
and is told apart by its `run_id` on the filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

import dlt
from dlt.sources import DltResource

from tfy_audit._compat.dlt import TColumnSchema
from tfy_audit._core.errors import ONE_LINE_MAX, DestinationError, TfyAuditError, one_line
from tfy_audit._core.options import DestinationOptions, SyncSummary
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, METADATA_TABLE, SOURCE_NAME
from tfy_audit._core.times import utc
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.destination import loader_file_format, pipelines_dir
from tfy_audit._warehouse.lakehouse import DeltaSqlClient
from tfy_audit._warehouse.sql_text import sql_string
from tfy_audit._warehouse.verify_log import log_sql_client

logger = logging.getLogger(__name__)

SYNC_RUNS: Final = "sync_runs"

# A run's status: `ok` every window read completely; `incomplete` some window could not be read
# completely (exit code 3); `failed` an error ended it; `interrupted` Ctrl-C, or killed before it
# could record how it ended.
OK, INCOMPLETE, FAILED, INTERRUPTED = "ok", "incomplete", "failed", "interrupted"

_TIMESTAMPS: Final = ("started_at", "finished_at", "range_start", "range_end")
_MARKS: Final = ("mark_before", "mark_after")

# The table's columns in order, by dlt data type.
_COLUMN_TYPES: Final = (
    ("run_id", "text"),
    ("status", "text"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
    ("filter_key", "text"),
    ("filters", "text"),
    ("range_start", "timestamp"),
    ("range_end", "timestamp"),
    ("mark_before", "timestamp"),
    ("mark_after", "timestamp"),
    ("rows", "text"),
    ("new_rows", "text"),
    ("audit_log_rows", "bigint"),
    ("events_read", "bigint"),
    ("requests", "bigint"),
    ("retries", "bigint"),
    ("windows", "bigint"),
    ("incomplete_windows", "bigint"),
    ("chunks", "bigint"),
    ("recovered_packages", "bigint"),
    ("seconds", "double"),
    ("clock_offset_seconds", "double"),
    ("error", "text"),
    ("tfy_audit_version", "text"),
    ("dlt_version", "text"),
    ("hostname", "text"),
)

# Columns added after the table was first released (nullable: older rows have none).
_ADDED_COLUMNS: Final = ("clock_offset_seconds",)


def _columns() -> dict[str, TColumnSchema]:
    """Every column typed, so a column that is null in every row of a load still exists."""
    columns: dict[str, TColumnSchema] = {}
    for name, data_type in _COLUMN_TYPES:
        column: dict[str, Any] = {"data_type": data_type, "nullable": name != "run_id"}
        if data_type == "timestamp":
            column["timezone"] = True
        columns[name] = cast(TColumnSchema, column)
    return columns


@dataclass
class RunRecord:
    """One row of `sync_runs`."""

    run_id: str
    started_at: datetime
    filter_key: str
    filters: dict[str, str]
    status: str = INTERRUPTED
    finished_at: datetime | None = None
    error: str | None = None
    range_start: datetime | None = None
    range_end: datetime | None = None
    # rows loaded per table, re-read rows (the lookback) included
    rows: dict[str, int] = field(default_factory=dict)
    # of those, the event tables' rows known to be new (see `SyncSummary.new_rows`)
    new_rows: dict[str, int] = field(default_factory=dict)
    events_read: int = 0
    requests: int = 0
    retries: int = 0
    windows: int = 0
    incomplete_windows: int = 0
    chunks: int = 0
    recovered_packages: int = 0
    seconds: float | None = None
    # seconds the service's clock was ahead of this machine's (negative: behind)
    clock_offset_seconds: float | None = None
    mark_before: datetime | None = None
    mark_after: datetime | None = None
    tfy_audit_version: str = ""
    dlt_version: str = ""
    hostname: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for name in (*_TIMESTAMPS, *_MARKS):
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        values = dict(data)
        for name in (*_TIMESTAMPS, *_MARKS):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name]).astimezone(UTC)
        return cls(**values)

    def row(self) -> dict[str, Any]:
        """The row as loaded: the per-table counts and the filters as JSON text."""
        data = dict(self.__dict__)
        data["filters"] = json.dumps(self.filters, sort_keys=True)
        data["rows"] = json.dumps(self.rows, sort_keys=True)
        data["new_rows"] = json.dumps(self.new_rows, sort_keys=True)
        data["audit_log_rows"] = self.rows.get("audit_logs", 0)
        return data

    def take_figures(self, summary: SyncSummary, *, merges: bool) -> None:
        """The run's figures; `merges`: whether the destination merges (else a re-read
        range loads only the events not loaded yet, so every event row loaded is new)."""
        self.range_start, self.range_end = summary.start, summary.end
        self.rows = dict(summary.rows)
        events = (AUDIT_LOGS_TABLE, METADATA_TABLE)
        self.new_rows = (
            dict(summary.new_rows)
            if merges
            else {t: n for t, n in summary.rows.items() if t in events}
        )
        self.events_read = summary.events_read
        self.requests = summary.requests
        self.retries = summary.retries
        self.windows = summary.windows
        self.incomplete_windows = len(summary.incomplete_windows)
        self.chunks = summary.chunks
        self.recovered_packages = summary.recovered_packages
        self.seconds = round(summary.seconds, 3)
        self.clock_offset_seconds = summary.clock_offset_seconds


def pending_dir(target: DestinationOptions) -> Path:
    """Where a pipeline's run records wait to be loaded (beside its lock)."""
    return Path(pipelines_dir(target)).expanduser() / f".{target.pipeline_name}.tfy-audit.runs"


def pending_records(folder: Path) -> list[RunRecord]:
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(RunRecord.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("ignoring the unreadable run record %s: %s", path, exc)
    return sorted(records, key=lambda r: r.started_at)


def error_text(exc: BaseException) -> str:
    """One line, as the CLI would show it."""
    text = one_line(exc)
    if isinstance(exc, TfyAuditError):
        return text
    return f"{type(exc).__name__}: {text}"[:ONE_LINE_MAX] if text else f"{type(exc).__name__}:"


@dlt.source(name=SOURCE_NAME, max_table_nesting=0)
def _runs_source(rows: list[dict[str, Any]]) -> DltResource:
    """The `sync_runs` rows, in the sync's own source (and so its schema)."""
    return dlt.resource(rows, name=SYNC_RUNS, write_disposition="append", columns=_columns())


_SQL_TYPES: Final = {
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "bigint": "BIGINT",
    "text": "TEXT",
    "double": "DOUBLE PRECISION",
}


def writes_by_sql(pipeline: dlt.Pipeline) -> bool:
    """Whether `sync_runs` is written by SQL (as `verify_runs` is): one statement on the
    connection the sync already has, instead of a dlt load of its own (the adapter says)."""
    return warehouse_of(pipeline).runs_by_sql


def load_records(
    pipeline: dlt.Pipeline, target: DestinationOptions, records: list[RunRecord]
) -> None:
    """Write `records` to `sync_runs`: by SQL where the destination's adapter says so
    (a record written before is replaced), else as a dlt load of their own (appended: a record
    loaded twice after a kill is told apart by its `run_id`)."""
    rows = [r.row() for r in records]
    client = log_sql_client(pipeline) if writes_by_sql(pipeline) else None
    if client is None:
        file_format: Any = loader_file_format(target)
        pipeline.extract(_runs_source(rows), loader_file_format=file_format)
        try:
            pipeline.normalize()
            pipeline.load()
        except Exception:
            # its package would otherwise be taken for a crashed run's by the next run
            with contextlib.suppress(Exception):
                pipeline.drop_pending_packages()
            raise
        return
    columns = _columns()
    names = list(columns)
    with client:
        if not client.has_dataset():
            client.create_dataset()
        table = client.make_qualified_table_name(SYNC_RUNS)
        ddl = ", ".join(
            f"{n} {_SQL_TYPES[str(c['data_type'])]}{'' if c.get('nullable') else ' NOT NULL'}"
            for n, c in columns.items()
        )
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} ({ddl})")
        # a table an earlier version made lacks the columns added since
        for name in _ADDED_COLUMNS:
            sql_type = _SQL_TYPES[str(columns[name]["data_type"])]
            client.execute_sql(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
        marks = ", ".join(["%s"] * len(names))
        with client.begin_transaction():
            client.execute_sql(
                f"DELETE FROM {table} WHERE run_id IN ({', '.join(['%s'] * len(rows))})",
                *[row["run_id"] for row in rows],
            )
            for row in rows:
                client.execute_sql(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
                    *[row[n] for n in names],
                )


class RunRecorder:
    """Records one sync run. Entered while the pipeline's lock is held, as soon as it is:
    `started` once the destination has answered, `finish` when the run succeeded; leaving it
    with an exception records the run as failed (or interrupted)."""

    def __init__(
        self,
        target: DestinationOptions,
        filters: AuditLogFilters,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        from tfy_audit._core.version import __version__

        self._target = target
        self._now = now
        self._folder = pending_dir(target)
        self.record = RunRecord(
            run_id=uuid.uuid4().hex,
            started_at=now(),
            filter_key=filters.key,
            filters=filters.as_dict(),
            tfy_audit_version=__version__,
            dlt_version=dlt.__version__,
            hostname=socket.gethostname(),
        )
        self._pipeline: dlt.Pipeline | None = None
        self._summary: SyncSummary | None = None

    def __enter__(self) -> RunRecorder:
        self._save()
        return self

    def started(
        self, pipeline: dlt.Pipeline, summary: SyncSummary, mark_before: datetime | None
    ) -> None:
        """The destination answered and the run's range is known."""
        self._pipeline = pipeline
        self._summary = summary
        self.record.mark_before = mark_before

    def finish(self, summary: SyncSummary) -> None:
        """The run is over and loaded: record it, with the pending records of earlier runs.
        Never raises: a run whose record cannot be loaded keeps it for the next run."""
        record = self.record
        record.status = INCOMPLETE if summary.incomplete_windows else OK
        record.mark_after = summary.covered_until
        self._close(summary)
        if self._pipeline is not None:
            self._flush(self._pipeline)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        record = self.record
        record.status = FAILED if isinstance(exc, Exception) else INTERRUPTED
        record.error = error_text(exc)
        self._close(self._summary)
        pipeline = self._pipeline
        # Written at once only where the destination answered this run, and, where the record
        # is a dlt load, nothing of the run is left half-loaded (that is the next run's to
        # finish first, before its record); never on Ctrl-C.
        if (
            pipeline is not None
            and isinstance(exc, Exception)
            and not isinstance(exc, DestinationError)
            and (writes_by_sql(pipeline) or not pipeline.has_pending_data)
        ):
            self._flush(pipeline)

    def _close(self, summary: SyncSummary | None) -> None:
        if summary is not None:
            merges = self._pipeline is None or warehouse_of(self._pipeline).merges
            self.record.take_figures(summary, merges=merges)
        self.record.finished_at = self._now()
        self._save()

    def _save(self) -> None:
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            path = self._folder / f"{self.record.run_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.record.to_json()))
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot keep this run's record in %s: %s", self._folder, exc)

    def _flush(self, pipeline: dlt.Pipeline) -> None:
        records = pending_records(self._folder)
        if not records:
            return
        try:
            load_records(pipeline, self._target, records)
        except Exception as exc:
            logger.warning(
                "the run history (%s) could not be written, it is kept for the next run: %s",
                SYNC_RUNS,
                error_text(exc),
            )
            return
        for record in records:
            (self._folder / f"{record.run_id}.json").unlink(missing_ok=True)
        logger.debug("recorded %d run(s) in %s", len(records), SYNC_RUNS)


def first_run_start(pipeline: dlt.Pipeline, filters: AuditLogFilters) -> datetime | None:
    """Where the filter set's first sync started, by the run history: the range start of the
    earliest run that moved the mark from none. For state written before the start was kept in
    it (`state.first_start`); None where no such run is recorded or the table cannot be read."""
    where = "mark_before is null and mark_after is not null order by started_at limit 1"
    try:
        client = log_sql_client(pipeline) if writes_by_sql(pipeline) else None
        if client is not None:  # written by SQL, so not in the dlt schema dataset() reads
            with client:
                table = client.make_qualified_table_name(SYNC_RUNS)
                rows = client.execute_sql(
                    f"select range_start from {table} where filter_key = %s and {where}",
                    filters.key,
                )
        elif warehouse_of(pipeline).own_reader(pipeline):  # dlt's downloads extensions
            with DeltaSqlClient(pipeline, [SYNC_RUNS]) as files:
                rows = files.execute_sql(
                    f"select range_start from {SYNC_RUNS} where filter_key = %s and {where}",
                    filters.key,
                )
        else:
            key = sql_string(filters.key)
            rows = (
                pipeline.dataset()
                .query(f"select range_start from {SYNC_RUNS} where filter_key = {key} and {where}")
                .fetchall()
            )
    except Exception as exc:  # no history kept (or none yet): the caller falls back
        logger.debug("cannot read the first run's start from %s: %s", SYNC_RUNS, exc)
        return None
    if not rows or rows[0][0] is None:
        return None
    value: datetime = rows[0][0]
    return utc(value)
