"""The store floor: what parsing the pages and storing their rows in DuckDB costs, alone.

The same pages as the raw floor, fetched with the same concurrency; each body is decoded by
tfy-audit's own `decode_page` (orjson, then the events and their metadata leaves flattened into
Arrow) in worker processes, one per CPU, spawned as tfy-audit's are; the `audit_logs` and
`audit_log_metadata` rows are then stored in a fresh DuckDB file, in one transaction with
DuckDB's default settings. Nothing else: no dlt (its imports, state, Parquet staging and load),
no completeness check, no retries, no subjects or coverage tables, no views, no memory limits.
`tfy-audit sync` does all of this and more, so this is how close to the raw floor its way of
storing the events could get on this machine; the rest of its time is the rest of its work.

    python -m bench.store_floor --host URL --db FILE [--concurrency 8]   (TFY_API_KEY in env)

Prints one JSON line: {"total": ..., "rows": ..., "leaves": ..., "seconds": ...,
"parse_seconds": ..., "store_seconds": ...}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from tfy_audit._service.pages import DecodedPage, decode_page

from bench.raw_floor import PAGE_SIZE, count_events, http_client, list_page

# every event's createdAt lies in here: each page's events are all kept
ALL_TIME = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


def decode(body: bytes) -> DecodedPage:
    return decode_page(body, *ALL_TIME)


def _warm_up() -> None:
    """A task that makes the pool start a worker now, not at the first page."""


def run_store_floor(host: str, api_key: str, concurrency: int, db: str) -> dict[str, Any]:
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    # spawned, not forked: a fork while the fetching threads (or, in the tests, the simulator's)
    # hold a lock can leave a worker hung, which hung the pool's shutdown once in a test run
    parsers = ProcessPoolExecutor(cpus, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(cpus):
        parsers.submit(_warm_up)  # their start overlaps the count and the first pages
    with (
        parsers,
        http_client(host, api_key, concurrency) as client,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floor") as pool,
    ):

        def page(offset: int) -> Future[DecodedPage]:
            return parsers.submit(decode, list_page(client, offset))

        total = count_events(client)
        decoded = list(pool.map(page, range(0, total, PAGE_SIZE)))
        batches = [b for b in (future.result().batch for future in decoded) if b is not None]
    parsed = time.perf_counter()
    # stored in one transaction once all is parsed: both cores are busy parsing until the last
    # page, and storing batches as they came took longer (2.2 s against 1.9 s at 100,000, in a
    # first version that stored the flat event columns only)
    audit_logs = pa.concat_tables([b.audit_logs for b in batches])
    metadata = pa.concat_tables([b.metadata for b in batches])
    connection = duckdb.connect(db)
    try:
        connection.register("audit_logs_rows", audit_logs)
        connection.register("metadata_rows", metadata)
        connection.execute("BEGIN")
        connection.execute("CREATE TABLE audit_logs AS SELECT * FROM audit_logs_rows")
        connection.execute("CREATE TABLE audit_log_metadata AS SELECT * FROM metadata_rows")
        connection.execute("COMMIT")
        rows = connection.execute("SELECT count(*) FROM audit_logs").fetchone()
        leaves = connection.execute("SELECT count(*) FROM audit_log_metadata").fetchone()
    finally:
        connection.close()
    finished = time.perf_counter()
    return {
        "total": total,
        "rows": int(rows[0]) if rows else 0,
        "leaves": int(leaves[0]) if leaves else 0,
        "seconds": round(finished - started, 3),
        "parse_seconds": round(parsed - started, 3),
        "store_seconds": round(finished - parsed, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_floor", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    api_key = os.environ.get("TFY_API_KEY")
    if not api_key:
        print("store_floor: TFY_API_KEY is not set", file=sys.stderr)
        return 2
    print(json.dumps(run_store_floor(args.host, api_key, args.concurrency, args.db)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
