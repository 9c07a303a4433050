"""The peer contender: dlt's generic `rest_api` source, configured plainly for the endpoint.

Default dlt settings throughout (loader file format, normalizer, one sequential paginator), so
the benchmark shows what a user gets from a declarative config, not a tuned one.

    python -m bench.rest_api_peer --host URL --db PATH --pipelines-dir DIR   (TFY_API_KEY in env)

Prints one JSON line: {"seconds": <pipeline.run time>, "load_ids": [...]}. The harness counts
the rows of `rest_api_peer.audit_logs` itself, after this process has exited.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

AUDIT_LOGS_PATH = "/api/svc/v1/audit-logs"
INITIAL_VALUE = "2015-01-01T00:00:00.000Z"
DATASET = "rest_api_peer"


def peer_config(host: str, api_key: str, initial_value: str = INITIAL_VALUE) -> dict[str, Any]:
    """The `rest_api` config, as a user would write it from the OpenAPI spec."""
    return {
        "client": {
            "base_url": host,
            "auth": {"type": "bearer", "token": api_key},
        },
        "resources": [
            {
                "name": "audit_logs",
                "endpoint": {
                    "path": AUDIT_LOGS_PATH,
                    "params": {"metric": "list"},
                    "paginator": {
                        "type": "offset",
                        "limit": 1000,
                        "offset_param": "offset",
                        "limit_param": "limit",
                        "total_path": "pagination.total",
                    },
                    "data_selector": "data",
                    "incremental": {
                        "cursor_path": "createdAt",
                        "initial_value": initial_value,
                        "start_param": "start",
                    },
                },
                "primary_key": "id",
                "write_disposition": "merge",
            }
        ],
    }


def run_peer(
    host: str, api_key: str, db: str, pipelines_dir: str, initial_value: str = INITIAL_VALUE
) -> dict[str, Any]:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(peer_config(host, api_key, initial_value))  # type: ignore[arg-type]
    pipeline = dlt.pipeline(
        pipeline_name="rest_api_peer",
        pipelines_dir=pipelines_dir,
        destination=dlt.destinations.duckdb(db),
        dataset_name=DATASET,
    )
    started = time.perf_counter()
    info = pipeline.run(source)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "load_ids": list(info.loads_ids)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rest_api_peer", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument(
        "--initial-value", default=INITIAL_VALUE, help="createdAt to start from (warm-up runs)"
    )
    args = parser.parse_args(argv)
    api_key = os.environ.get("TFY_API_KEY")
    if not api_key:
        print("rest_api_peer: TFY_API_KEY is not set", file=sys.stderr)
        return 2
    result = run_peer(args.host, api_key, args.db, args.pipelines_dir, args.initial_value)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
