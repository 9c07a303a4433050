"""`make bench-delta`: `tfy-audit sync` into Delta tables on a local S3 server, beside DuckDB.

For each size N: one simulator process serves N events (as in `bench.run`), moto's S3 server
runs in a process of its own on loopback with a fresh bucket, and two timed children load
everything: (a) `tfy-audit sync` into a fresh DuckDB file, (e) `tfy-audit sync --destination
filesystem --table-format delta` into the bucket. Each row gives wall time and peak RSS (of
the child's process tree, as `bench.run` measures it); the Delta tables are then read back with
`deltalake` and must hold each of the N ids once.

    python -m bench.delta --sizes 30000,100000,300000 [--moto-python .venv/bin/python]
                          [--out bench/results/delta.md]

moto is a development dependency: `--moto-python` names an interpreter that has it (the
project's dev venv, where `make bench-delta` points it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.run import (
    BenchError,
    Children,
    Contender,
    _child_env,
    _tfy_audit_command,
    start_simulator,
    sync_argv,
)

ACCESS_KEY, SECRET_KEY, REGION = "bench", "bench", "us-east-1"
DATASET = "truefoundry_audit"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "delta.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3(children: Children, python: str, port: int, timeout: float) -> subprocess.Popen[bytes]:
    """moto's S3 server on a loopback port, once it answers."""
    argv = [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc, _, _ = children.start(argv, "s3")
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(endpoint, timeout=2).status_code < 500:
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"moto's S3 server did not start with {python}")
        time.sleep(0.1)


def delta_env(endpoint: str, bucket: str) -> dict[str, str]:
    prefix = "DESTINATION__FILESYSTEM__"
    return {
        f"{prefix}BUCKET_URL": f"s3://{bucket}/lake",
        f"{prefix}CREDENTIALS__AWS_ACCESS_KEY_ID": ACCESS_KEY,
        f"{prefix}CREDENTIALS__AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        f"{prefix}CREDENTIALS__REGION_NAME": REGION,
        f"{prefix}CREDENTIALS__ENDPOINT_URL": endpoint,
    }


def count_delta_ids(endpoint: str, bucket: str) -> tuple[int, int]:
    """Rows and distinct ids of `audit_logs`, read back with deltalake."""
    from deltalake import DeltaTable

    storage = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    table = DeltaTable(f"s3://{bucket}/lake/{DATASET}/audit_logs", storage_options=storage)
    ids = table.to_pyarrow_table(columns=["id"])["id"].to_pylist()
    return len(ids), len(set(ids))


def run_size(events: int, args: argparse.Namespace) -> list[Contender]:
    tfy_audit = _tfy_audit_command()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfy-bench-delta-")))
        port = _free_port()
        endpoint, bucket = f"http://127.0.0.1:{port}", f"audit-{uuid.uuid4().hex[:12]}"
        # the DuckDB run ignores the filesystem destination's settings
        children = Children(root, {**_child_env(root / "pycache"), **delta_env(endpoint, bucket)})
        stack.callback(children.close)
        sim_args = argparse.Namespace(
            events=events,
            days=args.days,
            latency_ms=args.latency_ms,
            seed=args.seed,
            ready_timeout=60.0 + events * 0.0005,
        )
        _, sim = start_simulator(children, tfy_audit, sim_args)
        start_s3(children, args.moto_python, port, 60.0)
        httpx.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()

        duck = Contender("a", "(a) tfy-audit sync, DuckDB")
        db = root / "tfy.duckdb"
        lake = Contender("e", "(e) tfy-audit sync, Delta on S3")
        lake_argv = [
            *tfy_audit, "sync", "--host", sim.url, "--destination", "filesystem",
            "--table-format", "delta", "--dataset", DATASET,
            "--pipelines-dir", str(root / "delta.pipelines"), "--no-progress", "--json",
        ]  # fmt: skip
        runs = [(duck, sync_argv(tfy_audit, sim.url, db, args.concurrency)), (lake, lake_argv)]
        for contender, argv in runs:
            print(f"running {contender.label}, {events:,} events ...", flush=True)
            run = children.run(argv, contender.key, args.timeout)
            contender.measured(run)
            if run.ok:
                summary = json.loads(run.stdout)
                contender.rows = int(summary["rows"].get("audit_logs", 0))
                contender.detail = {"chunks": summary["chunks"], "requests": summary["requests"]}
        if lake.ok:
            rows, distinct = count_delta_ids(endpoint, bucket)
            lake.detail.update(rows_read_back=rows, distinct_ids=distinct)
            if not rows == distinct == events:
                lake.ok = False
                lake.error = f"read back {rows} rows, {distinct} ids; {events} were served"
        return [duck, lake]


def render(results: list[Contender]) -> str:
    lines = [
        "| run | events | time (s) | events/s | peak RSS (MiB) | read back |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in results:
        back = c.detail.get("distinct_ids")
        lines.append(
            f"| {c.label} | {c.rows or 0:,} | {c.seconds or 0:.1f} "
            f"| {c.rows_per_s or 0:,.0f} | {c.peak_rss_mib or 0:.0f} "
            f"| {'' if back is None else f'{back:,} ids, each once'}"
            f"{'' if c.ok else ' FAILED: ' + str(c.error).splitlines()[0]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delta", description=__doc__)
    parser.add_argument("--sizes", default="30000,100000,300000", help="comma-separated N")
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--moto-python", default=sys.executable)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    results: list[Contender] = []
    try:
        for n in sizes:
            results += run_size(n, args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    table = render(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(f"wrote {args.out}")
    return 0 if all(c.ok for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
