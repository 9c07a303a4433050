"""Constants of the TrueFoundry audit-log endpoint and of the sync's defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

AUDIT_LOGS_PATH: Final = "/api/svc/v1/audit-logs"

# The spec's bound on `limit`.
MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 1000

# Services like this one commonly refuse `offset + limit` beyond 10,000; windows are planned
# (by `metric=count`) so that no window needs to page deeper than this.
DEFAULT_MAX_OFFSET: Final = 10_000

DEFAULT_LOOKBACK: Final = timedelta(minutes=10)
DEFAULT_CONCURRENCY: Final = 8

# Seconds one request may take (connect, each read, the whole response), and the attempts a
# request gets on 429/5xx/network errors.
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_RETRIES: Final = 8

# Seconds a sync waits for another sync of the same pipeline to finish; 0 refuses at once.
DEFAULT_WAIT_FOR_LOCK: Final = 0.0

# A chunk is a run of consecutive windows committed to the destination together with the
# sync state; a crash loses at most the chunk in flight (here, ~15 s of reading). Each chunk
# costs a dlt extract-normalize-load cycle (~0.7 s): 1,000,000 events took 32.4 s in chunks of
# 100k, 25.8 s in chunks of 500k, 25.3 s in one; peak RSS 330, 358 and 347 MiB.
DEFAULT_CHUNK_EVENTS: Final = 500_000

# The first run of a pipeline loads the whole history (unless `--since` sets a later start):
# windows are planned from here.
HISTORY_START: Final = datetime(2015, 1, 1, tzinfo=UTC)

# Smallest window the planner makes; the service writes createdAt with millisecond precision.
MIN_WINDOW: Final = timedelta(milliseconds=1)

DEFAULT_DESTINATION: Final = "duckdb"
DEFAULT_DATASET: Final = "truefoundry_audit"
DEFAULT_PIPELINE_NAME: Final = "tfy_audit"
# Never the dataset's name: DuckDB names a file's catalog after the file, and a catalog named
# like the dataset makes dlt's SQL ambiguous (`Ambiguous reference to catalog or schema`).
DEFAULT_DUCKDB_PATH: Final = "tfy_audit.duckdb"

# Table names in the destination dataset.
AUDIT_LOGS_TABLE: Final = "audit_logs"
METADATA_TABLE: Final = "audit_log_metadata"
SUBJECTS_TABLE: Final = "subjects"
SYNC_WINDOWS_TABLE: Final = "sync_windows"
