"""Dagster definitions for tfy-audit: a long backfill as one run per UTC day, then a schedule.

    dagster dev -f examples/dagster/tfy_audit_dagster.py

Environment: `TFY_HOST`, `TFY_API_KEY` (read when a run starts), `TFY_AUDIT_BACKFILL_START`
(first day to backfill, default 2025-01-01), and for a destination other than the DuckDB file
`TFY_AUDIT_DESTINATION` plus dlt's own credentials (`DESTINATION__POSTGRES__CREDENTIALS`, ...).

- `truefoundry_audit_days`: one partition per UTC day; a run loads `[day, day + 1)` with
  tfy-audit's Python API (`run_sync`), chunk by chunk, merged on the event id, so re-running a
  day is harmless. The first partition also covers everything before it.
- `tfy_audit_incremental` (job) and `tfy_audit_every_10_minutes` (schedule): the same as
  `tfy-audit sync`, from the high-water mark (minus the lookback) to now.

Why the first partition reaches back to the start of history: tfy-audit's high-water mark
means "every event before it has been read", so a range only moves it if it starts at or
before the mark (or at the start of history when there is no mark yet). Days materialized in
order from the first partition therefore carry the mark along, and the incremental job starts
where the backfill ended. Days materialized out of order load their rows but leave the mark
alone; the incremental job then re-reads from the mark, which costs time, never correctness.

Every run takes tfy-audit's per-pipeline lock and waits for it (`wait_for_lock_seconds`), so
concurrent partition runs queue instead of failing. Better still, give the `tfy_audit` pool a
limit of 1 (`dagster instance concurrency set tfy_audit 1`, or in `dagster.yaml`) so Dagster
itself runs one sync at a time.
"""

import os
from datetime import UTC, date, datetime

import dagster as dg
from tfy_audit import HISTORY_START, DestinationOptions, SyncOptions, SyncSummary, run_sync

POOL = "tfy_audit"
DEFAULTS = DestinationOptions()  # tfy-audit sync's own destination, dataset and pipeline


class TfyAuditResource(dg.ConfigurableResource):
    """Where the audit trail comes from and where it goes; the same knobs as `tfy-audit sync`."""

    host: str | None = None  # default: TFY_HOST
    api_key: str | None = None  # default: TFY_API_KEY; pass dg.EnvVar, never a literal
    destination: str = "duckdb"
    db: str = DEFAULTS.db
    dataset: str = DEFAULTS.dataset
    pipeline_name: str = DEFAULTS.pipeline_name
    pipelines_dir: str | None = None
    wait_for_lock_seconds: float = 6 * 3600.0

    def sync(self, start: datetime | None = None, end: datetime | None = None) -> SyncSummary:
        options = SyncOptions(
            target=DestinationOptions(
                destination=self.destination,
                db=self.db,
                dataset=self.dataset,
                pipeline_name=self.pipeline_name,
                pipelines_dir=self.pipelines_dir,
            ),
            host=self.host,
            api_key=self.api_key,
            start=start,
            end=end,
            wait_for_lock=self.wait_for_lock_seconds,
        )
        return run_sync(options)


def _utc(value: datetime) -> datetime:
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _metadata(summary: SyncSummary) -> dict[str, object]:
    """What a run shows in Dagster; fails the run (so it is retried) if a window came short."""
    metadata: dict[str, object] = {
        "range": f"{summary.start.isoformat()} .. {summary.end.isoformat()}",
        "events_read": summary.events_read,
        "rows": dg.MetadataValue.json(summary.rows),
        "windows": summary.windows,
        "requests": summary.requests,
        "covered_until": summary.covered_until.isoformat() if summary.covered_until else "",
    }
    if summary.incomplete_windows:
        # rows already loaded stay loaded; the retry reads the range again and merges
        raise dg.Failure(
            description=f"{len(summary.incomplete_windows)} window(s) could not be read "
            "completely; the run is retried",
            metadata={
                **metadata,
                "incomplete_windows": dg.MetadataValue.json(summary.incomplete_windows),
            },
        )
    return metadata


def build_definitions(backfill_start: date, resource: TfyAuditResource) -> dg.Definitions:
    days = dg.DailyPartitionsDefinition(start_date=backfill_start.isoformat(), timezone="UTC")
    first_day = datetime(backfill_start.year, backfill_start.month, backfill_start.day, tzinfo=UTC)
    retry = dg.RetryPolicy(max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL)

    @dg.asset(
        name="truefoundry_audit_days",
        partitions_def=days,
        retry_policy=retry,
        pool=POOL,
        kinds={"dlt"},
        description="TrueFoundry audit events created on the partition's UTC day.",
    )
    def audit_days(
        context: dg.AssetExecutionContext, tfy_audit: TfyAuditResource
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        start, end = _utc(window.start), _utc(window.end)
        if start <= first_day:
            start = HISTORY_START  # see the module docstring: lets the mark follow the backfill
        context.log.info("syncing %s .. %s", start.isoformat(), end.isoformat())
        return dg.MaterializeResult(metadata=_metadata(tfy_audit.sync(start=start, end=end)))

    @dg.op(retry_policy=retry, pool=POOL)
    def incremental_sync(
        context: dg.OpExecutionContext, tfy_audit: TfyAuditResource
    ) -> dg.Output[None]:
        summary = tfy_audit.sync()
        context.log.info("read %d events up to %s", summary.events_read, summary.covered_until)
        return dg.Output(None, metadata=_metadata(summary))

    @dg.job(name="tfy_audit_incremental", description="tfy-audit sync: new events since the mark")
    def incremental() -> None:
        incremental_sync()

    schedule = dg.ScheduleDefinition(
        name="tfy_audit_every_10_minutes",
        job=incremental,
        cron_schedule="*/10 * * * *",
        execution_timezone="UTC",
        # turn it on once the backfill has caught up (see the module docstring)
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return dg.Definitions(
        assets=[audit_days],
        jobs=[incremental],
        schedules=[schedule],
        resources={"tfy_audit": resource},
    )


def _backfill_start() -> date:
    return date.fromisoformat(os.environ.get("TFY_AUDIT_BACKFILL_START", "2025-01-01"))


defs = build_definitions(
    _backfill_start(),
    TfyAuditResource(
        destination=os.environ.get("TFY_AUDIT_DESTINATION", "duckdb"),
        db=os.environ.get("TFY_AUDIT_DB", DEFAULTS.db),
    ),
)
