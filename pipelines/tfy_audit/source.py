"""The dlt source (`truefoundry_audit`) and its one resource, `audit_logs`, which also feeds
the `audit_log_metadata`, `subjects` and `sync_windows` tables.

Used on its own, the source loads, in one load, everything from the last high-water mark (minus
the lookback) to now. `tfy-audit sync` drives the same source chunk by chunk instead, so that a
long backfill is committed as it goes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
from dlt.extract.resource import DltResource

from .client import AuditLogClient, AuditLogFilters, RetryPolicy
from .config import resolve_api_key, resolve_host
from .extract import ExtractObserver, audit_log_tables
from .fetch import Item, plan_chunk
from .rows import SubjectObservation
from .settings import (
    AUDIT_LOGS_TABLE,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_OFFSET,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    METADATA_TABLE,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)
from .state import Chunk, resolve_range, stream_state
from .timeparse import parse_user_time


def _timestamp() -> TColumnSchema:
    # a fresh dict each time: dlt writes the column name into the hint it is given
    return {"data_type": "timestamp", "timezone": True, "nullable": True}


@dlt.source(name="truefoundry_audit", max_table_nesting=0)
def truefoundry_audit(
    host: str | None = dlt.config.value,
    api_key: str | None = dlt.secrets.value,
    start: str | None = None,
    end: str | None = None,
    lookback_seconds: float = DEFAULT_LOOKBACK.total_seconds(),
    filters: dict[str, str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_offset: int = DEFAULT_MAX_OFFSET,
    timeout: float = DEFAULT_TIMEOUT,
    client: Any = None,
    chunk: Any = None,
    known_subjects: Any = None,
    sync_id: str | None = None,
    observer: Any = None,
    decoder: Any = None,
    skip_ids: Any = None,
    items: Any = None,
) -> DltResource:
    """TrueFoundry audit logs, incremental by `createdAt`, merged on `id`.

    Args:
        host: control plane URL; falls back to `TFY_HOST`.
        api_key: bearer token; falls back to `TFY_API_KEY`.
        start, end: ISO 8601 bounds of a one-off range; by default the run continues from the
            last high-water mark minus `lookback_seconds`, up to now.
        filters: the endpoint's filters by snake_case name (`action`, `resource_type`, ...);
            each filter set keeps its own high-water mark.
        page_size, concurrency, max_offset, timeout, decoder: how the endpoint is read (and
            where pages are decoded), unless `items` brings the pages already being read.
        client, chunk, known_subjects, sync_id, observer, skip_ids, items: set by
            `tfy-audit sync`, which plans the run, commits it chunk by chunk, and reads each
            chunk's pages ahead of dlt's extract (decoding them in worker processes).
    """
    flt = AuditLogFilters.from_mapping(filters or {})
    resource = dlt.resource(
        _audit_logs(
            client=client,
            host=host,
            api_key=api_key,
            timeout=timeout,
            filters=flt,
            chunk=chunk,
            start=parse_user_time(start, "start") if start else None,
            end=parse_user_time(end, "end") if end else None,
            lookback=timedelta(seconds=lookback_seconds),
            page_size=page_size,
            concurrency=concurrency,
            max_offset=max_offset,
            known_subjects=known_subjects,
            sync_id=sync_id or uuid.uuid4().hex,
            observer=observer,
            decoder=decoder,
            skip_ids=skip_ids,
            items=items,
        ),
        name=AUDIT_LOGS_TABLE,
    )
    # A chunk of events never loaded before is appended; anything else is merged on the key.
    # A chunk never yields an event twice (ids repeated on a page or across the pages of a
    # chunk are dropped), so the merge skips dlt's de-duplication of the staged rows: a
    # ROW_NUMBER() over every column, which needs the whole chunk in memory and ran DuckDB out
    # of its 128 MB on a 100,000-event re-merge. A staged file copied twice after a crash is
    # found by the sync's duplicate check, which re-merges the day.
    appending = isinstance(chunk, Chunk) and chunk.append
    merge: TWriteDispositionConfig = {
        "disposition": "merge",
        "strategy": "delete-insert",
        "deduplicated": True,
    }
    disposition: TWriteDispositionConfig = "append" if appending else merge
    resource.apply_hints(
        table_name=METADATA_TABLE,
        write_disposition=disposition,
        # an event read again replaces all of its leaves, so no stale path survives; a chunk
        # never holds an event twice, so (audit_log_id, path) needs no de-duplication
        merge_key="audit_log_id",
        columns={"audit_log_id": {"data_type": "text", "nullable": False}},
        create_table_variant=True,
    )
    resource.apply_hints(
        table_name=SUBJECTS_TABLE,
        # de-duplicated by dlt: a handful of rows per chunk, and should a crash make dlt copy a
        # staged file twice, nothing else would find a doubled subject
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="subject_id",
        columns={"first_seen_at": _timestamp(), "last_seen_at": _timestamp()},
        create_table_variant=True,
    )
    resource.apply_hints(
        table_name=SYNC_WINDOWS_TABLE,
        write_disposition="append",
        create_table_variant=True,
    )
    # Last: variants copy the resource's hints at the time they are made.
    resource.apply_hints(
        write_disposition=disposition,
        primary_key="id",
        columns={
            "id": {"data_type": "text", "nullable": False},
            "created_at": _timestamp(),
            "updated_at": _timestamp(),
            "meta_data": {"data_type": "json", "nullable": True},
            "extra_fields": {"data_type": "json", "nullable": True},
        },
    )
    return resource


def _audit_logs(
    *,
    client: AuditLogClient | None,
    host: str | None,
    api_key: str | None,
    timeout: float,
    filters: AuditLogFilters,
    chunk: Chunk | None,
    start: datetime | None,
    end: datetime | None,
    lookback: timedelta,
    page_size: int,
    concurrency: int,
    max_offset: int,
    known_subjects: dict[str, SubjectObservation] | None,
    sync_id: str,
    observer: ExtractObserver | None,
    decoder: Executor | None,
    skip_ids: set[str] | None,
    items: Iterable[Item] | None,
) -> Iterator[Any]:
    own_client = client is None
    if client is None:
        client = AuditLogClient(
            resolve_host(host),
            resolve_api_key(api_key),
            timeout=timeout,
            retry=RetryPolicy(),
            max_connections=concurrency,
        )
    try:
        if chunk is None:
            entry = stream_state(dlt.current.source_state(), filters)
            run = resolve_range(entry, start=start, end=end, lookback=lookback)
            chunk = plan_chunk(client, filters, run, max_offset=max_offset, concurrency=concurrency)
        if known_subjects is None:
            from .warehouse import read_subjects

            known_subjects = read_subjects(dlt.current.pipeline())
        yield from audit_log_tables(
            client,
            filters,
            chunk,
            page_size=page_size,
            concurrency=concurrency,
            max_offset=max_offset,
            known_subjects=known_subjects,
            sync_id=sync_id,
            observer=observer,
            decoder=decoder,
            skip_ids=skip_ids,
            items=items,
        )
    finally:
        if own_client:
            client.close()
