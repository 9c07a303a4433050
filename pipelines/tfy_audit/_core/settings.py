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

# The token the simulator (`tfy-audit simulate`, `tfy_audit.simulator`) accepts by default.
SIMULATOR_API_KEY: Final = "tfy-sim-key"

# A response body may hold this much per event of the page asked for, plus a fixed allowance
# (counted after decompression); `--max-response-mb` sets another cap.
RESPONSE_BYTES_PER_EVENT: Final = 32 * 1024
RESPONSE_BYTES_BASE: Final = 1024 * 1024
# The largest event a run loads: a response holding one event may be this large plus
# RESPONSE_BYTES_BASE, whatever the page size; an event larger still is recorded and set aside
# (anomalies.py). A page over its cap is asked for again in smaller pages before that.
MAX_EVENT_BYTES: Final = 16 * 1024 * 1024
# An error response is read this far: enough for any message worth quoting.
ERROR_BODY_BYTES: Final = 64 * 1024

# No audit trail holds more events than this; a count beyond it is the service's error.
MAX_PLAUSIBLE_TOTAL: Final = 10**10
# The count requests planning one run may make: a base, plus this many for each window the
# run's own count says it needs (a real service's plan takes a small fraction of it).
PLAN_BASE_REQUESTS: Final = 10_000
PLAN_REQUESTS_PER_WINDOW: Final = 64
DEFAULT_CONCURRENCY: Final = 8

# Seconds one request may take as a whole (connecting, waiting, reading its body), and the
# attempts a request gets on 429/5xx/network errors.
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_RETRIES: Final = 8

# Seconds a sync waits for another sync of the same pipeline to finish; 0 refuses at once.
DEFAULT_WAIT_FOR_LOCK: Final = 0.0

# Where `--publish` writes a read-only snapshot of a DuckDB dataset; None writes none.
DEFAULT_PUBLISH: Final[str | None] = None

# Where `sync` writes daily receipts (a folder or a bucket URL); None writes none.
DEFAULT_RECEIPTS_DIR: Final[str | None] = None

# A chunk is a run of consecutive windows committed to the destination together with the
# sync state; a crash loses at most the chunk in flight. Each chunk costs a dlt
# extract-normalize-load cycle, so chunks are large (docs/performance.md has the trade-off).
DEFAULT_CHUNK_EVENTS: Final = 500_000

# The first run of a pipeline loads the whole history (unless `--since` sets a later start):
# windows are planned from here.
HISTORY_START: Final = datetime(2015, 1, 1, tzinfo=UTC)

# Smallest window the planner makes; the service writes createdAt with millisecond precision.
MIN_WINDOW: Final = timedelta(milliseconds=1)

# The dlt source's name: its schema's name and the key of its state in the pipeline's state.
SOURCE_NAME: Final = "truefoundry_audit"

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
ANOMALIES_TABLE: Final = "event_anomalies"

# How log records are written on stderr: `text` (one readable line each) or `json` (one JSON
# object a line, for a log shipper). `--log-format` sets it, else this environment variable.
LOG_FORMATS: Final = ("text", "json")
DEFAULT_LOG_FORMAT: Final = "text"
LOG_FORMAT_ENV: Final = "TFY_AUDIT_LOG_FORMAT"

# A run reads no later than the service's own clock (its `Date`, whole seconds) less this, so
# the mark never passes an instant the service may still stamp events at (clock.py).
SERVICE_CLOCK_MARGIN: Final = timedelta(seconds=1)
# The clocks differing by more than this is worth a warning.
CLOCK_SKEW_WARN_SECONDS: Final = 60.0
# DuckDB's memory limit for a retried load job, one that ran out of the usual small limit
# (destination.py): this share of the memory the process may use (its cgroup's limit, else the
# machine's), never below a floor that holds the largest row a response may carry (an event up
# to MAX_EVENT_BYTES, with its metadata leaves and their Parquet pages) nor above a ceiling
# (a larger cache loads no faster and would only raise the run's peak). The environment
# variable sets it as DuckDB spells it (`512MB`, `2GB`).
DUCKDB_MEMORY_SHARE: Final = 0.25
DUCKDB_MEMORY_FLOOR: Final = 256 * 1024 * 1024
DUCKDB_MEMORY_CEILING: Final = 512 * 1024 * 1024
DUCKDB_MEMORY_LIMIT_ENV: Final = "TFY_AUDIT_DUCKDB_MEMORY_LIMIT"
# The memory the process may use, as DuckDB spells sizes (`1GiB`, `512MB`): this environment
# variable, else its cgroup's limit, else the machine's memory (memory.py). DuckDB's retry limit
# above is a share of it, and reading pages is held to one at a time while the process holds
# more than READ_GATE_SHARE of it (fetch.py), so the peak does not depend on how the allocators
# happen to keep freed memory.
MEMORY_LIMIT_ENV: Final = "TFY_AUDIT_MEMORY_LIMIT"
READ_GATE_SHARE: Final = 0.5

# `tfy-audit sql`: rows shown unless `--limit` says otherwise (0: all), and the output formats
DEFAULT_SQL_LIMIT: Final = 1000
SQL_FORMATS: Final = ("table", "csv", "json")

# dlt's data writer for the command's syncs (cli.py): a load file is cut once it passes this
# many bytes, and rows are flushed to it in buffers of at most this many, so one load job never
# holds more than about this much however large the events are. The extract writes each item
# as it comes (the audit resource's items are Arrow tables of at most extract.YIELD_BYTES, or
# of one row): a buffer of rows would join items of wide rows into one file past the cut.
DATA_WRITER_FILE_MAX_BYTES: Final = 16 * 1024 * 1024
DATA_WRITER_BUFFER_MAX_ITEMS: Final = 1000
EXTRACT_BUFFER_MAX_ITEMS: Final = 1

# -- detection rules and alerts (tfy_audit/_detect) ----------------------------------------------
ALERTS_TABLE: Final = "alerts"
ALERT_DELIVERIES_TABLE: Final = "alert_deliveries"
# Each detection pass's range, once its alerts are kept: where `sync --detect` resumes after
# runs that loaded events but did not judge them (a failed or killed run, or one without it).
DETECTION_PASSES_TABLE: Final = "detection_passes"
# A rule without `window` fires once per dedup key per UTC day.
DEFAULT_RULE_WINDOW: Final = timedelta(days=1)
# `tfy-audit detect` without `--start`: this far back from its end.
DEFAULT_DETECT_RANGE: Final = timedelta(days=1)
# The HMAC-SHA256 secret of `--alert-webhook`: this environment variable, else
# `alerts.webhook_secret` in .dlt/secrets.toml (ALERTS__WEBHOOK_SECRET).
WEBHOOK_SECRET_ENV: Final = "TFY_AUDIT_WEBHOOK_SECRET"
WEBHOOK_SIGNATURE_HEADER: Final = "X-Tfy-Audit-Signature-256"
# One delivery's attempts, the backoff between them (doubling from the first), each attempt's
# timeout, and the time all deliveries of one run may take; what is left stays pending.
DELIVERY_ATTEMPTS: Final = 3
DELIVERY_BACKOFF_SECONDS: Final = 0.5
DELIVERY_TIMEOUT_SECONDS: Final = 10.0
DELIVERY_BUDGET_SECONDS: Final = 60.0
# Alerts one run delivers to one channel at most, oldest first (a first run over a long
# history must not flood a Slack channel); the rest go with the next runs.
DELIVERY_MAX_PER_RUN: Final = 100

# `tfy-audit export --format ocsf`: the Security Lake partition values an export writes under
# (region=<r>/accountId=<a>/) when no flag names them, and the formats it writes.
EXPORT_FORMATS: Final = ("ocsf",)
DEFAULT_EXPORT_REGION: Final = "us-east-1"
DEFAULT_EXPORT_ACCOUNT: Final = "000000000000"
