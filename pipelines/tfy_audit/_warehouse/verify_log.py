"""The last `verify` results, kept in the warehouse (`verify_runs`) for the report to show.

One row per `tfy-audit verify` run: when it ran, the range it compared, how many UTC days it
compared, how many differed (after `--repair`, if repaired) and the events they missed. The
table is created on first use with SQL DuckDB and PostgreSQL both accept; destinations without
a persistent SQL engine (e.g. `filesystem`) keep no record.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

import dlt

from tfy_audit._compat.dlt import persistent_sql_client
from tfy_audit._warehouse.sql_text import sql_timestamp as _ts

logger = logging.getLogger(__name__)

VERIFY_RUNS: Final = "verify_runs"


def log_sql_client(pipeline: dlt.Pipeline) -> Any | None:
    """The SQL client of a destination with a persistent SQL engine, where run logs are kept
    by plain SQL; None for the others (the filesystem's client only scans its files)."""
    return persistent_sql_client(pipeline)


def record_verify_run(pipeline: dlt.Pipeline, result: Any, *, now: datetime | None = None) -> bool:
    """Append `result` (a `VerifyResult`, or an `IdsResult` of `--ids`) to `verify_runs`;
    False where nothing is kept."""
    client = log_sql_client(pipeline)
    if client is None:
        return False
    values = ", ".join(
        (
            _ts(now or datetime.now(UTC)),
            _ts(result.start),
            _ts(result.end),
            str(len(result.days)),
            str(result.differing_days),
            str(result.missing_events),
        )
    )
    with client:
        if not client.has_dataset():
            client.create_dataset()
        table = client.make_qualified_table_name(VERIFY_RUNS)
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {table} (verified_at TIMESTAMP WITH TIME ZONE,"
            " range_start TIMESTAMP WITH TIME ZONE, range_end TIMESTAMP WITH TIME ZONE,"
            " days BIGINT, differing_days BIGINT, missing BIGINT)"
        )
        client.execute_sql(
            "INSERT INTO"
            f" {table} (verified_at, range_start, range_end, days, differing_days, missing)"
            f" VALUES ({values})"
        )
    logger.debug("recorded the verify run in %s", table)
    return True
