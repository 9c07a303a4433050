"""The dlt source, `truefoundry_audit`, and the tables it loads: one resource, `audit_logs`,
which also feeds the `audit_log_metadata`, `subjects` and `sync_windows` tables.

Used on its own, the source loads, in one load, everything from the last high-water mark (minus
the lookback) to now. `tfy-audit sync` extracts `chunk_source` instead, once per chunk, so that
a long backfill is committed as it goes: the same source name (so the same schema and state)
and the same table hints (`apply_table_hints`), with the pages the sync reads ahead.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
from dlt.sources import DltResource

from tfy_audit._compat.dlt import TColumnSchema, TWriteDispositionConfig, iterator_resource
from tfy_audit._core.options import SyncOptions, client_limits, parse_since, validate
from tfy_audit._core.query import AuditLogFilters
from tfy_audit._core.redact import install_log_filter
from tfy_audit._core.settings import (
    ANOMALIES_TABLE,
    AUDIT_LOGS_TABLE,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_OFFSET,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    METADATA_TABLE,
    SOURCE_NAME,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)
from tfy_audit._core.timeparse import parse_duration, parse_user_time
from tfy_audit._service.client import AuditLogClient
from tfy_audit._service.clock import end_by_service, warn_if_skewed
from tfy_audit._service.fetch import Item, read_windows
from tfy_audit._service.planning import Chunk, plan_chunk
from tfy_audit._service.subjects import SubjectObservation
from tfy_audit._source.config import _from_dlt, resolve_api_key, resolve_checked_host
from tfy_audit._source.extract import ExtractObserver, audit_log_tables
from tfy_audit._source.state import run_range, stream_state
from tfy_audit._warehouse.readback import read_subjects


@dlt.source(name=SOURCE_NAME, max_table_nesting=0)
def truefoundry_audit(
    host: str | None = dlt.config.value,
    api_key: str | None = dlt.secrets.value,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    since: str | datetime | timedelta | None = None,
    lookback: str | timedelta | None = DEFAULT_LOOKBACK,
    filters: Mapping[str, str] | AuditLogFilters | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_offset: int = DEFAULT_MAX_OFFSET,
    timeout: float = DEFAULT_TIMEOUT,
    allow_insecure_http: bool = False,
) -> DltResource:
    """TrueFoundry audit logs, incremental by `createdAt`, merged on `id`.

    Each argument is the `SyncOptions` field of the same name, in the same unit, and is read
    from `sources.truefoundry_audit.<name>` in dlt config when not passed; text takes what the
    command line's flag of that name takes (`--since 90d`, `--lookback 2h`).

    Args:
        host: control plane URL; falls back to `TFY_HOST`. `http://` only to this machine,
            unless `allow_insecure_http`.
        api_key: bearer token; falls back to `TFY_API_KEY`.
        start, end: bounds of a one-off range (ISO 8601, or a duration back such as 7d); by
            default the run continues from the last high-water mark minus `lookback`, up to now.
        since: where the first run (no high-water mark yet) starts: a time, or a duration back
            from now; None reads the whole history. Recorded in the state as `tfy-audit sync`
            records it.
        lookback: how far behind the high-water mark each run re-reads (None: the default).
        filters: the endpoint's filters by snake_case name (`action`, `resource_type`, ...);
            each filter set keeps its own high-water mark.
        page_size, concurrency, max_offset, timeout: how the endpoint is read (events per page,
            requests at once, the deepest offset the service pages to, seconds per request).
    """
    install_log_filter()  # the API key never reaches a log line
    options = source_options(
        host=host,
        api_key=api_key,
        start=start,
        end=end,
        since=since,
        lookback=lookback,
        filters=filters,
        page_size=page_size,
        concurrency=concurrency,
        max_offset=max_offset,
        timeout=timeout,
        allow_insecure_http=allow_insecure_http,
    )
    rows = _whole_run(options)
    return apply_table_hints(dlt.resource(rows, name=AUDIT_LOGS_TABLE), append=False)


# the name `lookback` had in the source's config before it took `SyncOptions`' unit
_OLD_LOOKBACK_KEY = "lookback_seconds"


def source_options(
    *,
    start: str | datetime | None,
    end: str | datetime | None,
    since: str | datetime | timedelta | None,
    lookback: str | timedelta | None,
    filters: Mapping[str, str] | AuditLogFilters | None,
    **same: Any,
) -> SyncOptions:
    """The plain source's arguments as the `SyncOptions` `run_sync` takes, text parsed as the
    command line parses it and checked by the same `validate`; `same`: the arguments whose
    value is already the option's."""
    if isinstance(lookback, str):
        lookback = parse_duration(lookback, "lookback")
    old = _old_lookback()
    if old is not None and lookback in (None, DEFAULT_LOOKBACK):  # `lookback` unset: the old key
        lookback = old
    options = SyncOptions(
        start=_time(start, "start"),
        end=_time(end, "end"),
        since=parse_since(since, "since") if isinstance(since, str) else since,
        lookback=DEFAULT_LOOKBACK if lookback is None else lookback,
        filters=filters
        if isinstance(filters, AuditLogFilters)
        else AuditLogFilters.from_mapping(filters or {}),
        **same,
    )
    validate(options)
    return options


def _time(value: str | datetime | None, option: str) -> datetime | None:
    return parse_user_time(value, option) if isinstance(value, str) and value else value or None


def _old_lookback() -> timedelta | None:
    """`sources.truefoundry_audit.lookback_seconds`, still honoured (unless `lookback` is set)
    with a warning."""
    seconds = _from_dlt(_OLD_LOOKBACK_KEY)
    if seconds is None:
        return None
    warnings.warn(
        f"sources.truefoundry_audit.{_OLD_LOOKBACK_KEY} is deprecated; set "
        f"sources.truefoundry_audit.lookback to a duration such as 2h instead",
        FutureWarning,  # shown by default: for the people who set the key
        stacklevel=2,
    )
    return timedelta(seconds=float(seconds))


@dlt.source(name=SOURCE_NAME, max_table_nesting=0)
def chunk_source(
    *,
    filters: AuditLogFilters,
    chunk: Chunk,
    items: Iterable[Item],
    known_subjects: dict[str, SubjectObservation],
    sync_id: str,
    observer: ExtractObserver,
    skip_ids: set[str],
    replace_nul: bool,
    undated: set[str],
    undated_merged: bool,
    merges: bool,
) -> DltResource:
    """One chunk of `tfy-audit sync`, its pages and window reports coming from `items` (read
    ahead by the sync). `merges`: the destination can merge (else every table is appended).
    Not part of the public API: no argument has a default, so dlt makes none of them a config
    field."""
    rows = audit_log_tables(
        filters,
        chunk,
        items,
        known_subjects=known_subjects,
        sync_id=sync_id,
        observer=observer,
        skip_ids=skip_ids,
        replace_nul=replace_nul,
        undated=undated,
        undated_merged=undated_merged,
    )
    resource = iterator_resource(rows, name=AUDIT_LOGS_TABLE)
    return apply_table_hints(resource, append=chunk.append, merges=merges)


def _timestamp() -> TColumnSchema:
    # a fresh dict each time: dlt writes the column name into the hint it is given
    return {"data_type": "timestamp", "timezone": True, "nullable": True}


def apply_table_hints(resource: DltResource, *, append: bool, merges: bool = True) -> DltResource:
    """The hints of the five tables the `audit_logs` resource feeds: keys, column types, and
    how each is written (`append`: the events were never loaded before). A destination that
    cannot merge (`merges` False: the filesystem without a table format) gets `append` for
    every table, as dlt would fall back to, without dlt's warning on each load; the sync skips
    the ids already written there (loader.py)."""
    # A chunk of events never loaded before is appended; anything else is merged on the key.
    # A chunk never yields an event twice (ids repeated on a page or across the pages of a
    # chunk are dropped), so the merge skips dlt's de-duplication of the staged rows: a
    # ROW_NUMBER() over every column, which needs the whole chunk in memory and runs a large
    # re-merge out of DuckDB's memory limit. A staged file copied twice after a crash is found
    # by the sync's duplicate check, which re-merges the day.
    merge: TWriteDispositionConfig = {
        "disposition": "merge",
        "strategy": "delete-insert",
        "deduplicated": True,
    }
    disposition: TWriteDispositionConfig = "append" if append or not merges else merge
    subjects: TWriteDispositionConfig = (
        {"disposition": "merge", "strategy": "delete-insert"} if merges else "append"
    )
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
        write_disposition=subjects,
        primary_key="subject_id",
        columns={"first_seen_at": _timestamp(), "last_seen_at": _timestamp()},
        create_table_variant=True,
    )
    resource.apply_hints(
        table_name=SYNC_WINDOWS_TABLE,
        write_disposition="append",
        create_table_variant=True,
    )
    resource.apply_hints(
        table_name=ANOMALIES_TABLE,
        # one row per finding (kind, event, field): a re-read of the same event updates it,
        # also from a chunk that appends its events (an undated event is read by every chunk)
        write_disposition=subjects,
        primary_key="anomaly_id",
        columns={"anomaly_id": {"data_type": "text", "nullable": False}},
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


def _whole_run(options: SyncOptions) -> Iterator[Any]:
    """The plain source's rows: the run's range from its state, planned and read as one chunk."""
    host = resolve_checked_host(options.host, allow_insecure_http=options.allow_insecure_http)
    client = AuditLogClient(
        host,
        resolve_api_key(options.api_key, host),
        retry=options.retry,
        max_connections=options.concurrency,
        **client_limits(options, time.monotonic()),
    )
    filters = options.filters
    with client:
        entry = stream_state(dlt.current.source_state(), filters)
        at = datetime.now(UTC)
        run = run_range(entry, options, at)
        chunk = plan_chunk(
            client, filters, run, max_offset=options.max_offset, concurrency=options.concurrency
        )
        # the run ends no later than the service's clock (clock.py)
        service_clock = client.service_clock()
        warn_if_skewed(service_clock)
        run, windows = end_by_service(run, chunk.windows, service_clock)
        chunk = Chunk(run.start, run.end, windows, run.advances_state)
        known_subjects = read_subjects(dlt.current.pipeline())
        items = read_windows(
            client,
            filters,
            chunk.windows,
            page_size=options.page_size,
            concurrency=options.concurrency,
            max_offset=options.max_offset,
        )
        yield from audit_log_tables(
            filters, chunk, items, known_subjects=known_subjects, sync_id=uuid.uuid4().hex
        )
