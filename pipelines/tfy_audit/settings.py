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

# Seconds an HTTP request may wait on the service (connecting: at most 10) before it fails
# and is retried.
DEFAULT_TIMEOUT: Final = 60.0

# A chunk is a run of consecutive windows committed to the destination together with the
# sync state; a crash loses at most the chunk in flight (here, ~15 s of reading). Each chunk
# costs a dlt extract-normalize-load cycle (~0.7 s): 1,000,000 events took 32.4 s in chunks of
# 100k, 25.8 s in chunks of 500k, 25.3 s in one; peak RSS 330, 358 and 347 MiB.
DEFAULT_CHUNK_EVENTS: Final = 500_000

# The first run of a pipeline loads the whole history: windows are planned from here.
HISTORY_START: Final = datetime(2015, 1, 1, tzinfo=UTC)

# Smallest window the planner makes; the service writes createdAt with millisecond precision.
MIN_WINDOW: Final = timedelta(milliseconds=1)

# The dlt source's name: its schema's name and the key of its state in the pipeline's state.
SOURCE_NAME: Final = "truefoundry_audit"

DEFAULT_DATASET: Final = "truefoundry_audit"
DEFAULT_PIPELINE_NAME: Final = "tfy_audit"
# not the dataset's name: a DuckDB file named like the dataset makes dlt's SQL ambiguous
DEFAULT_DUCKDB_PATH: Final = "tfy_audit.duckdb"

# Query parameter names of the endpoint's filters, keyed by our snake_case names.
FILTER_PARAMS: Final[dict[str, str]] = {
    "action": "action",
    "search": "search",
    "resource_id": "resourceId",
    "resource_type": "resourceType",
    "resource_name": "resourceName",
    "resource_fqn": "resourceFqn",
    "cluster_id": "clusterId",
    "workspace_id": "workspaceId",
    "subject_slug": "subjectSlug",
}

# Table names in the destination dataset.
AUDIT_LOGS_TABLE: Final = "audit_logs"
METADATA_TABLE: Final = "audit_log_metadata"
SUBJECTS_TABLE: Final = "subjects"
SYNC_WINDOWS_TABLE: Final = "sync_windows"
