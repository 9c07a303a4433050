"""The raw floor: the same pages, fetched with the same concurrency, bodies read and discarded.

No JSON parsing, no normalizing, no loading: the time this takes is the least any loader could
need against this service over this network with this many connections.

    python -m bench.raw_floor --host URL [--concurrency 8]   (TFY_API_KEY in env)

Prints one JSON line: {"total": ..., "pages": ..., "requests": ..., "bytes": ..., "seconds": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

AUDIT_LOGS_PATH = "/api/svc/v1/audit-logs"
PAGE_SIZE = 1000


def count_events(client: httpx.Client) -> int:
    response = client.get(AUDIT_LOGS_PATH, params={"metric": "count"})
    response.raise_for_status()
    total = response.json()["pagination"]["total"]  # the one tiny body we do parse
    return int(total)


def http_client(host: str, api_key: str, concurrency: int) -> httpx.Client:
    """The floors' client: `concurrency` connections, kept alive."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.Client(
        base_url=host,
        headers={"Authorization": f"Bearer {api_key}"},
        limits=limits,
        timeout=httpx.Timeout(60.0),
    )


def list_page(client: httpx.Client, offset: int) -> bytes:
    params = {"metric": "list", "limit": str(PAGE_SIZE), "offset": str(offset)}
    response = client.get(AUDIT_LOGS_PATH, params=params)
    response.raise_for_status()
    return response.content


def run_floor(host: str, api_key: str, concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    with (
        http_client(host, api_key, concurrency) as client,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floor") as pool,
    ):
        total = count_events(client)
        offsets = range(0, total, PAGE_SIZE)
        sizes = list(pool.map(lambda offset: len(list_page(client, offset)), offsets))
    seconds = time.perf_counter() - started
    return {
        "total": total,
        "pages": len(sizes),
        "requests": len(sizes) + 1,
        "bytes": sum(sizes),
        "seconds": round(seconds, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_floor", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    api_key = os.environ.get("TFY_API_KEY")
    if not api_key:
        print("raw_floor: TFY_API_KEY is not set", file=sys.stderr)
        return 2
    print(json.dumps(run_floor(args.host, api_key, args.concurrency)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
