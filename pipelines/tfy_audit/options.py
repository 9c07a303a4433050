"""What a sync is asked to do and what it reports: the options (with their defaults from
`settings`), their validation, and the run's summary. No dlt here: the CLI and a library caller
build these before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .client import AuditLogFilters, RetryPolicy
from .errors import UsageError
from .settings import (
    DEFAULT_CHUNK_EVENTS,
    DEFAULT_CONCURRENCY,
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_OFFSET,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PIPELINE_NAME,
    MAX_PAGE_SIZE,
)

# Below this many planned events, pages are decoded in the fetching threads.
WORKERS_FROM_EVENTS = 20_000


@dataclass
class DestinationOptions:
    destination: str = "duckdb"
    db: str = DEFAULT_DUCKDB_PATH
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    pipelines_dir: str | None = None


@dataclass
class SyncOptions:
    target: DestinationOptions = field(default_factory=DestinationOptions)
    host: str | None = None
    api_key: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    lookback: timedelta = DEFAULT_LOOKBACK
    filters: AuditLogFilters = field(default_factory=AuditLogFilters)
    concurrency: int = DEFAULT_CONCURRENCY
    page_size: int = DEFAULT_PAGE_SIZE
    max_offset: int = DEFAULT_MAX_OFFSET
    chunk_events: int = DEFAULT_CHUNK_EVENTS
    timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait_for_lock: float = 0.0
    # processes that parse and normalize pages; 0 decodes in the fetching threads, which is the
    # safe default for library use (worker processes re-import the caller's __main__ module)
    workers: int = 0
    workers_from_events: int = WORKERS_FROM_EVENTS
    transport: Any = None  # an httpx transport, for tests


@dataclass
class SyncSummary:
    start: datetime
    end: datetime
    filters: dict[str, str]
    windows: int = 0
    incomplete_windows: list[str] = field(default_factory=list)
    chunks: int = 0
    events_read: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    # rows of chunks whose events were never loaded before; rows of a re-read range (the
    # lookback) may be new as well, which is not known
    new_rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    recovered_packages: int = 0
    covered_until: datetime | None = None
    load_ids: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "filters": self.filters,
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
            "chunks": self.chunks,
            "events_read": self.events_read,
            "rows": self.rows,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "recovered_packages": self.recovered_packages,
            "covered_until": self.covered_until.isoformat() if self.covered_until else None,
            "load_ids": self.load_ids,
            "views": self.views,
        }


def validate(options: SyncOptions) -> None:
    if not 1 <= options.page_size <= MAX_PAGE_SIZE:
        raise UsageError(
            f"--page-size {options.page_size} is outside 1..{MAX_PAGE_SIZE} (the endpoint's limit)"
        )
    if options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if options.retry.max_attempts < 1:
        raise UsageError("--retries must be at least 1 (the number of attempts per request)")
    if options.workers < 0:
        raise UsageError("--workers must be 0 (decode in threads) or more")
    if options.max_offset < options.page_size:
        raise UsageError("--max-offset must be at least the page size")
    if options.start and options.end and options.end <= options.start:
        raise UsageError(
            f"--end ({options.end.isoformat()}) is not after --start ({options.start.isoformat()})"
        )
