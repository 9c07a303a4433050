"""The decoder worker processes: what they import decides what each one costs a sync."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from tfy_audit._service.decoders import decoder_pool
from tfy_audit._service.pages import decode_page, decode_released

_IMPORTED = (
    "sorted(m for m in __import__('sys').modules "
    "if m in ('dlt', 'httpx', 'pendulum') or m.startswith('dlt.'))"
)


def test_workers_decode_pages_without_importing_dlt() -> None:
    """A spawned worker imports the module of its initializer and of each task; none of them
    may pull in dlt (0.5 s of CPU and ~100 MB per worker), httpx or pendulum."""
    body = orjson.dumps(
        {
            "data": [{"id": "e1", "action": "CREATE", "createdAt": "2026-01-02T03:04:05.678Z"}],
            "pagination": {"total": 1},
        }
    )
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    with decoder_pool(2) as decoders:
        assert decoders is not None
        page = decoders.pool.submit(decode_page, body, start, end).result(timeout=60)
        # as the fetcher submits a page: through the wrapper that frees a large body's memory
        again = decoders.pool.submit(decode_released, decode_page, body, start, end, 0)
        assert again.result(timeout=60).ids == ["e1"]
        imported = decoders.pool.submit(eval, _IMPORTED).result(timeout=60)
        frozen = decoders.pool.submit(eval, "__import__('gc').get_freeze_count()").result(60)
    assert page.ids == ["e1"] and page.total == 1
    assert page.batch is not None and page.batch.audit_logs.column("action").to_pylist() == [
        "CREATE"
    ]
    assert imported == []
    assert frozen > 10_000  # the modules, out of the collector's way


def test_no_workers_means_no_pool() -> None:
    with decoder_pool(0) as decoders:
        assert decoders is None


def test_the_command_module_imports_nothing_heavy() -> None:
    """A spawned worker runs the command's main module again: importing `tfy_audit._cli.main` must
    not pull in what only the main process needs."""
    import subprocess
    import sys

    probe = (
        "import sys, tfy_audit._cli.main; "
        "print(','.join(m for m in ('httpx', 'pendulum', 'dlt', 'pyarrow', 'duckdb') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
