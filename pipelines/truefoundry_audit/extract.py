"""The body of the `audit_logs` resource: read a chunk of windows, yield Arrow tables.

One read of the service feeds four tables, so the resource yields Arrow tables marked with their
table name: events (`audit_logs`), metadata leaves (`audit_log_metadata`), subjects whose
first/last seen or attributes changed (`subjects`), and one coverage row per window
(`sync_windows`). Arrow skips dlt's per-row normalizer; the state change that marks the chunk
loaded is made last, so it is committed in the same load package as the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import dlt
import orjson
import pyarrow as pa

from .client import AuditLogClient, AuditLogFilters
from .fetch import PageOfWindow, WindowFetcher, WindowReport
from .rows import (
    SubjectObservation,
    merge_subject_observations,
    normalize_events,
    subjects_table,
)
from .settings import AUDIT_LOGS_TABLE, METADATA_TABLE, SUBJECTS_TABLE, SYNC_WINDOWS_TABLE
from .state import Chunk, advance, stream_state

logger = logging.getLogger(__name__)


class _ArrowHintNoise(logging.Filter):
    """dlt warns on every chunk that our JSON/timestamp hints differ from the Arrow types we
    send (JSON as text, by design); the load coerces them as intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "when merging arrow schema with dlt schema" not in record.getMessage()


logging.getLogger("dlt").addFilter(_ArrowHintNoise())

# Events are normalized in batches of this size: large enough for Arrow to pay off, small enough
# that memory stays flat whatever the size of the range.
BATCH_EVENTS = 5_000

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


class NullObserver:
    def on_events(self, count: int) -> None:
        pass

    def on_window(self, report: WindowReport) -> None:
        pass


def audit_log_tables(
    client: AuditLogClient,
    filters: AuditLogFilters,
    chunk: Chunk,
    *,
    page_size: int,
    concurrency: int,
    max_offset: int,
    known_subjects: dict[str, SubjectObservation],
    sync_id: str,
    observer: ExtractObserver | None = None,
) -> Iterator[Any]:
    observer = observer or NullObserver()
    entry = stream_state(dlt.current.source_state(), filters)
    load_id = _current_load_id()
    seen: set[str] = set()
    batch: list[dict[str, Any]] = []
    reports: list[WindowReport] = []
    changed_subjects: dict[str, SubjectObservation] = {}

    def flush() -> Iterator[Any]:
        if not batch:
            return
        normalized = normalize_events(batch)
        batch.clear()
        for obs in merge_subject_observations(known_subjects, normalized.subjects):
            changed_subjects[obs.subject_id] = obs
        yield dlt.mark.with_table_name(normalized.audit_logs, AUDIT_LOGS_TABLE)
        if normalized.metadata.num_rows:
            yield dlt.mark.with_table_name(normalized.metadata, METADATA_TABLE)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfy-fetch") as pool:
        fetcher = WindowFetcher(
            client,
            filters,
            pool,
            page_size=page_size,
            max_offset=max_offset,
            max_in_flight=concurrency * 2,
        )
        for item in fetcher.fetch(chunk.windows):
            if isinstance(item, PageOfWindow):
                fresh = [e for e in item.events if e.get("id") not in seen]
                seen.update(e.get("id") for e in fresh)  # type: ignore[misc]
                batch.extend(fresh)
                observer.on_events(len(fresh))
                if len(batch) >= BATCH_EVENTS:
                    yield from flush()
            else:
                reports.append(item)
                observer.on_window(item)
    yield from flush()

    if changed_subjects:
        yield dlt.mark.with_table_name(subjects_table(changed_subjects.values()), SUBJECTS_TABLE)
    if reports:
        yield dlt.mark.with_table_name(
            _sync_windows_table(reports, filters, sync_id, load_id), SYNC_WINDOWS_TABLE
        )
    # Last: the state travels in the same load package as the rows it vouches for.
    advance(entry, chunk)


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
