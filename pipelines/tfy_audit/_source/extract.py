"""The body of the `audit_logs` resource: read a chunk of windows, yield Arrow tables.

One read of the service feeds five tables, so the resource yields Arrow tables marked with their
table name: events (`audit_logs`), metadata leaves (`audit_log_metadata`), subjects whose
first/last seen or attributes changed (`subjects`), one coverage row per window
(`sync_windows`), and a record of every event the tool had to change or could not place
(`event_anomalies`, anomalies.py). Arrow skips dlt's per-row normalizer; the state change that
marks the chunk loaded is made last, so it is committed in the same load package as the rows.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tfy_audit._compat.dlt import ARROW_HINT_WARNING
from tfy_audit._core.settings import (
    ANOMALIES_TABLE,
    AUDIT_LOGS_TABLE,
    METADATA_TABLE,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)
from tfy_audit._service import nul
from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind, anomalies_table
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._service.fetch import Item, WindowReport
from tfy_audit._service.planning import Chunk
from tfy_audit._service.rows import EventBatch
from tfy_audit._service.subjects import (
    SubjectObservation,
    merge_subject_observations,
    subjects_table,
)
from tfy_audit._source.state import advance

logger = logging.getLogger(__name__)


class _ArrowHintNoise(logging.Filter):
    """dlt warns on every chunk that our JSON/timestamp hints differ from the Arrow types we
    send (JSON as text, by design); the load coerces them as intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return ARROW_HINT_WARNING not in record.getMessage()


logging.getLogger("dlt").addFilter(_ArrowHintNoise())

# dlt's extract pays a fixed cost per item yielded (it computes the table schema of each), so
# pages are handed over in batches of about this many events, or this many bytes of Arrow data.
# Each item is written to a load file as it comes (settings.EXTRACT_BUFFER_MAX_ITEMS), and a
# table of wide rows (pages of large manifests) is handed over in slices of YIELD_BYTES, so a
# load file holds at most about DATA_WRITER_FILE_MAX_BYTES plus one slice: DuckDB copies a file
# in vectors of 2,048 rows, and its memory grows with the rows of a file, not only its limit.
# Ordinary events reach YIELD_EVENTS long before YIELD_BYTES: their path is unchanged.
YIELD_EVENTS = 10_000
YIELD_BYTES = 8 * 1024 * 1024

SYNC_WINDOWS_SCHEMA = pa.schema(
    [
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("filter_key", pa.string()),
        ("filters", pa.string()),
        ("planned_count", pa.int64()),
        ("service_total", pa.int64()),
        ("rows_read", pa.int64()),
        ("pages", pa.int64()),
        ("reads", pa.int64()),
        ("complete", pa.bool_()),
        ("sync_id", pa.string()),
        ("load_id", pa.string()),
        ("fetched_at", pa.timestamp("us", tz="UTC")),
    ]
)


class ExtractObserver(Protocol):
    def on_events(self, count: int) -> None: ...

    def on_window(self, report: WindowReport) -> None: ...

    # `count` rows of the chunk repeat an id yielded by another window (see fetch.py)
    def on_repeated_ids(self, count: int) -> None: ...

    # what the chunk recorded in `event_anomalies`, once per chunk, before its state
    def on_anomalies(self, anomalies: list[Anomaly]) -> None: ...


class NullObserver:
    def on_events(self, count: int) -> None:
        pass

    def on_window(self, report: WindowReport) -> None:
        pass

    def on_repeated_ids(self, count: int) -> None:
        pass

    def on_anomalies(self, anomalies: list[Anomaly]) -> None:
        pass


def audit_log_tables(
    filters: AuditLogFilters,
    chunk: Chunk,
    items: Iterable[Item],
    *,
    known_subjects: dict[str, SubjectObservation],
    sync_id: str,
    observer: ExtractObserver | None = None,
    skip_ids: set[str] | None = None,
    replace_nul: bool = False,
    undated: set[str] | None = None,
    undated_merged: bool = True,
) -> Iterator[Any]:
    """The chunk's tables from `items`, its pages and window reports as they are read.
    `skip_ids`: events already in a destination that cannot merge. `replace_nul`: the
    destination cannot hold U+0000 in text (nul.py). `undated`: ids of the events without a
    usable createdAt loaded before or by this sync; the service may return such an event to
    every query, so unless the chunk's rows are merged (`undated_merged`) those ids are
    dropped, and each such event is loaded once, keyed by its id; it grows with what is
    yielded. The reading yields an event once per window; an id yielded by two windows is
    reported to the observer (see fetch.py)."""
    observer = observer or NullObserver()
    source_state = dlt.current.source_state()
    load_id = _current_load_id()
    reports: list[WindowReport] = []
    changed_subjects: dict[str, SubjectObservation] = {}
    batch_of_pages = _PageBatch()
    fingerprints = _Fingerprints()
    anomalies: list[Anomaly] = []

    def fit(table: pa.Table, name: str) -> pa.Table:
        if not replace_nul:
            return table
        table, found = nul.replace_nul(table, name)
        anomalies.extend(found)
        return table

    for item in items:
        if isinstance(item, WindowReport):
            reports.append(item)
            observer.on_window(item)
            continue
        if isinstance(item, Anomaly):
            anomalies.append(item)
            continue
        batch = item.page.batch
        assert batch is not None  # the fetcher passes on pages with rows only
        if skip_ids and not skip_ids.isdisjoint(batch.ids):
            # drop events a destination that cannot update rows holds already
            batch = batch.without(skip_ids.intersection(batch.ids))
            if not batch.ids:
                continue
        if undated is not None:
            batch = _once_if_undated(batch, undated, undated_merged, anomalies)
            if batch is None:
                continue
        anomalies.extend(batch.anomalies)
        for obs in merge_subject_observations(known_subjects, batch.subjects):
            changed_subjects[obs.subject_id] = obs
        fingerprints.add(batch.ids)
        observer.on_events(len(batch.ids))
        if batch_of_pages.add(
            fit(batch.audit_logs, AUDIT_LOGS_TABLE), fit(batch.metadata, METADATA_TABLE)
        ):
            yield from batch_of_pages.flush()
    yield from batch_of_pages.flush()

    if changed_subjects:
        subjects = fit(subjects_table(changed_subjects.values()), SUBJECTS_TABLE)
        yield dlt.mark.with_table_name(subjects, SUBJECTS_TABLE)
    repeated = fingerprints.repeated()
    if repeated:
        observer.on_repeated_ids(repeated)
    if reports:
        yield dlt.mark.with_table_name(
            _sync_windows_table(reports, filters, sync_id, load_id), SYNC_WINDOWS_TABLE
        )
    if anomalies:
        table = fit(anomalies_table(anomalies, sync_id=sync_id, load_id=load_id), ANOMALIES_TABLE)
        observer.on_anomalies(anomalies)
        yield dlt.mark.with_table_name(table, ANOMALIES_TABLE)
    # Last: the state travels in the same load package as the rows it vouches for.
    incomplete = [r.window.start for r in reports if not r.complete]
    if chunk.held_back_to is not None:
        incomplete.append(chunk.held_back_to)
    advance(source_state, filters, chunk, incomplete_from=min(incomplete, default=None))


_UNDATED_DETAIL: Final = (
    "no usable createdAt (a raw value is kept in extra_fields); loaded once, keyed by its id"
)


def _once_if_undated(
    batch: EventBatch, undated: set[str], merged: bool, anomalies: list[Anomaly]
) -> EventBatch | None:
    """The batch without its undated events already loaded (unless rows are merged), each one
    yielded recorded (a record is appended with its row); `undated` learns them. None if
    nothing is left."""
    created = batch.audit_logs.column("created_at")
    if not created.null_count:
        return batch
    ids = [i for i, ok in zip(batch.ids, created.is_valid().to_pylist(), strict=True) if not ok]
    drop = set() if merged else undated.intersection(ids)
    undated.update(ids)
    anomalies.extend(
        Anomaly(
            AnomalyKind.NO_CREATED_AT, AnomalyAction.LOADED_ONCE, i, "$.createdAt", _UNDATED_DETAIL
        )
        for i in ids
        if i not in drop
    )
    if not drop:
        return batch
    if len(drop) == len(batch.ids):
        return None
    return batch.without(drop)


class _Fingerprints:
    """A 64-bit hash of every id the chunk yields, to notice an id served by two windows
    (8 bytes per event, a small part of what a set of the ids takes). A hash collision is a false
    alarm, which costs a check of the destination, never a row.

    Counted by sorting, which holds far less memory than Arrow's count_distinct of the hashes
    (`make bench` reports the run's peak)."""

    def __init__(self) -> None:
        self._hashes = array("q")

    def add(self, ids: list[str]) -> None:
        self._hashes.extend(map(hash, ids))

    def repeated(self) -> int:
        """How many of the ids yielded repeat one yielded before (0 for none)."""
        count = len(self._hashes)
        if count < 2:
            return 0
        hashes = pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(self._hashes)])
        ordered = pc.take(hashes, pc.array_sort_indices(hashes))
        repeats: int = pc.sum(pc.equal(ordered[1:], ordered[:-1])).as_py()
        return repeats


class _PageBatch:
    """Pages' rows, held until there are enough to hand to dlt as one item per table."""

    def __init__(self) -> None:
        self.audit_logs: list[pa.Table] = []
        self.metadata: list[pa.Table] = []
        self.events = 0
        self.nbytes = 0

    def _take(self) -> tuple[list[pa.Table], list[pa.Table]]:
        held = self.audit_logs, self.metadata
        self.audit_logs, self.metadata, self.events, self.nbytes = [], [], 0, 0
        return held

    def add(self, audit_logs: pa.Table, metadata: pa.Table) -> bool:
        """Hold a page's rows; True when the batch is full."""
        self.audit_logs.append(audit_logs)
        if metadata.num_rows:
            self.metadata.append(metadata)
        self.events += audit_logs.num_rows
        self.nbytes += audit_logs.nbytes + metadata.nbytes
        return self.events >= YIELD_EVENTS or self.nbytes >= YIELD_BYTES

    def flush(self) -> Iterator[Any]:
        audit_logs, metadata = self._take()
        if audit_logs:
            for piece in _slices(pa.concat_tables(audit_logs)):
                yield dlt.mark.with_table_name(piece, AUDIT_LOGS_TABLE)
        if metadata:
            for piece in _slices(pa.concat_tables(metadata)):
                yield dlt.mark.with_table_name(piece, METADATA_TABLE)


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    """`table` in slices of about YIELD_BYTES each (zero-copy); a row larger than that is a
    slice by itself. A table within YIELD_BYTES is handed over whole."""
    if table.nbytes <= YIELD_BYTES or table.num_rows <= 1:
        yield table
        return
    rows = max(1, table.num_rows * YIELD_BYTES // table.nbytes)
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)


def _current_load_id() -> str | None:
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except Exception:  # outside a pipeline's extract (e.g. iterating the resource directly)
        return None


def _sync_windows_table(
    reports: list[WindowReport], filters: AuditLogFilters, sync_id: str, load_id: str | None
) -> pa.Table:
    now = datetime.now(UTC)
    filters_json = orjson.dumps(filters.as_dict()).decode()
    rows = sorted(reports, key=lambda r: r.window)
    return pa.Table.from_pydict(
        {
            "window_start": [r.window.start for r in rows],
            "window_end": [r.window.end for r in rows],
            "filter_key": [filters.key] * len(rows),
            "filters": [filters_json] * len(rows),
            "planned_count": [r.planned_count for r in rows],
            "service_total": [r.service_total for r in rows],
            "rows_read": [r.rows for r in rows],
            "pages": [r.pages for r in rows],
            "reads": [r.reads for r in rows],
            "complete": [r.complete for r in rows],
            "sync_id": [sync_id] * len(rows),
            "load_id": [load_id] * len(rows),
            "fetched_at": [now] * len(rows),
        },
        schema=SYNC_WINDOWS_SCHEMA,
    )
