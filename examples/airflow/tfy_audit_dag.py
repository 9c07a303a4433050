"""Airflow DAGs running the `truefoundry_audit` dlt source with dlt's `PipelineTasksGroup`.

Copy next to your DAGs with this project installed in the Airflow image (`pip install .`), and
give the workers `TFY_HOST`, `TFY_API_KEY` and the destination's credentials in dlt's form
(e.g. `DESTINATION__POSTGRES__CREDENTIALS`), as environment variables or Airflow-provided
dlt config. Create an Airflow pool `tfy_audit` with ONE slot: both DAGs share one pipeline
state, and the source (unlike `tfy-audit sync`) takes no lock of its own.

- `tfy_audit_incremental`: every 10 minutes, everything since the high-water mark (minus the
  lookback), in one dlt load.
- `tfy_audit_backfill`: triggered by hand; the history split by calendar month, one task group
  per month, run one after another.

Why split by time and not with `decompose`: `PipelineTasksGroup.add_run(decompose=...)`
("serialize", "parallel", "parallel-isolated") splits a source by its resources, and this
source has exactly one (`audit_logs`; the other tables are variants it writes), so every mode
gives one task. A long backfill is split by passing `start`/`end` to the source instead. The
months run in order and the first starts at the beginning of history, so each month carries
the high-water mark forward and the incremental DAG starts where the backfill ended (a range
only moves the mark if it starts at or before it).

Airflow is not a dependency of tfy-audit: without it this module defines no DAG, so linters and
test runners can import it.
"""

from __future__ import annotations

import functools
import importlib.util
from datetime import UTC, datetime, timedelta
from typing import Any

DESTINATION = "postgres"  # any dlt destination; credentials from dlt config
DATASET = "truefoundry_audit"
PIPELINE_NAME = "tfy_audit"  # the same as `tfy-audit sync`, so the two share the state
POOL = "tfy_audit"
BACKFILL_START = datetime(2024, 1, 1, tzinfo=UTC)  # the first month backfilled on its own
HISTORY_START = "2015-01-01T00:00:00+00:00"  # tfy-audit's start of history


def month_ranges(start: datetime, end: datetime) -> list[tuple[str, str, str]]:
    """(label, start, end) for each calendar month (UTC) of [start, end), ISO 8601 bounds.

    The first range reaches back to the start of history, so that months run in order carry
    the high-water mark along (a range only moves it if it starts at or before it).
    """
    ranges: list[tuple[str, str, str]] = []
    month = datetime(start.year, start.month, 1, tzinfo=UTC)
    lower = HISTORY_START
    while month < end:
        following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        upper = min(following, end).isoformat()
        ranges.append((month.strftime("%Y_%m"), lower, upper))
        lower, month = upper, following
    return ranges


def _task_args() -> dict[str, Any]:
    return {
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "pool": POOL,  # one slot: the two DAGs never load at the same time
    }


def _group(group_id: str) -> Any:
    from dlt.helpers.airflow_helper import PipelineTasksGroup
    from tenacity import Retrying, stop_after_attempt, wait_exponential

    return PipelineTasksGroup(
        group_id,
        use_data_folder=False,
        wipe_local_data=True,  # the state is restored from the destination at every run
        use_task_logger=True,
        # retries the load step (dlt's default `retry_pipeline_steps`); the task's own
        # `retries` re-run extraction, which re-reads from the mark
        retry_policy=Retrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=2, min=10, max=120),
            reraise=True,
        ),
    )


def _pipeline() -> Any:
    import dlt

    # created AFTER its task group, which points dlt at a fresh working directory
    return dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=DESTINATION, dataset_name=DATASET)


def build_incremental_dag() -> Any:
    from airflow.decorators import dag
    from tfy_audit import truefoundry_audit

    @dag(
        dag_id="tfy_audit_incremental",
        schedule="*/10 * * * *",
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args=_task_args(),
        tags=["tfy-audit", "dlt"],
        # keep it paused until the backfill is done: with no mark yet, its first run would
        # load the whole history in one load
        is_paused_upon_creation=True,
    )
    def tfy_audit_incremental() -> None:
        group = _group("tfy_audit_incremental")
        # a callable: the source is built when the task runs, not when the scheduler parses
        group.add_run(_pipeline(), truefoundry_audit, decompose="none")

    return tfy_audit_incremental()


def build_backfill_dag(until: datetime | None = None) -> Any:
    """Months from BACKFILL_START up to `until` (default: the start of the current month, so
    the DAG changes once a month; the incremental DAG covers the current month)."""
    from airflow.decorators import dag
    from tfy_audit import truefoundry_audit

    now = datetime.now(UTC)
    end = until or datetime(now.year, now.month, 1, tzinfo=UTC)

    @dag(
        dag_id="tfy_audit_backfill",
        schedule=None,
        start_date=datetime(2025, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        default_args=_task_args(),
        tags=["tfy-audit", "dlt", "backfill"],
    )
    def tfy_audit_backfill() -> None:
        previous = None
        for label, lower, upper in month_ranges(BACKFILL_START, end):
            # one group per month: add_run names its task after the pipeline, so a second
            # add_run in one group would clash
            group = _group(f"tfy_audit_{label}")
            group.add_run(
                _pipeline(),
                functools.partial(truefoundry_audit, start=lower, end=upper),
                decompose="none",
            )
            if previous is not None:
                previous >> group
            previous = group

    return tfy_audit_backfill()


if importlib.util.find_spec("airflow") is not None:  # pragma: no cover - needs Airflow
    incremental_dag = build_incremental_dag()
    backfill_dag = build_backfill_dag()
