"""`tfy-audit` that kills itself with SIGKILL at a chosen point: `TFY_CRASH_AT=phase:n`; or,
with `TFY_SIGNAL=INT` or `TERM`, sends that signal to its whole process group there instead
(as a terminal's Ctrl-C or a scheduler's stop would) and runs on as the real command does.

Phases: `fetch` (the n-th list request), `extract` (right after chunk n's state changed, before
its package is committed), `extracted` (chunk n's package committed, not normalized),
`normalize` (after chunk n's files were spooled), `normalized` (chunk n's normalized package
committed, its extracted copy not yet deleted), `load` (after the first load jobs of chunk n
ran), `complete` (all jobs of chunk n done, package not marked), `publish` (the n-th
`--publish` snapshot copied into its temporary file, not yet renamed onto its path), `alerts`
(a detection pass's alerts committed, none delivered yet).
Used by the crash tests; the product code has no such hook.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


def _hit() -> None:
    name = os.environ.get("TFY_SIGNAL")
    if name:
        os.killpg(os.getpgrp(), getattr(signal, "SIG" + name))
    else:
        os.kill(os.getpid(), signal.SIGKILL)


def _kill_on_nth(owner: Any, name: str, n: int, *, after: bool) -> None:
    """Hit on the n-th call of `owner.name`. Calls come from several threads (the fetching
    threads' `list_page`): each takes its number under a lock, so exactly one call is the n-th.
    A bare `calls += 1` let two threads step past n between one's increment and its test, and
    then no call hit at all: the run went on and exited 0."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = 0
    counting = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        with counting:
            calls += 1
            this_call = calls
        if this_call == n and not after:
            _hit()
        result = original(*args, **kwargs)
        if this_call == n and after:
            _hit()
        return result

    setattr(owner, name, wrapper)


def install(spec: str) -> None:
    phase, _, count = spec.partition(":")
    n = int(count or 1)
    if phase == "none":
        return
    if phase == "fetch":
        from tfy_audit._service.client import AuditLogClient

        _kill_on_nth(AuditLogClient, "list_page", n, after=False)
    elif phase == "extract":
        import tfy_audit._source.extract as extract

        _kill_on_nth(extract, "advance", n, after=True)
    elif phase == "extracted":
        from dlt.pipeline.pipeline import Pipeline

        _kill_on_nth(Pipeline, "extract", n, after=True)
    elif phase == "normalize":
        from dlt.normalize.normalize import Normalize

        _kill_on_nth(Normalize, "spool_files", n, after=True)
    elif phase == "normalized":
        from dlt.common.storages.load_storage import LoadStorage

        _kill_on_nth(LoadStorage, "commit_new_load_package", n, after=True)
    elif phase == "load":
        from dlt.load.load import Load

        _kill_on_nth(Load, "complete_jobs", n, after=True)
    elif phase == "complete":
        from dlt.load.load import Load

        _kill_on_nth(Load, "complete_package", n, after=False)
    elif phase == "publish":
        import tfy_audit._engine.publish as publish

        _kill_on_nth(publish, "_copy_database", n, after=True)
    elif phase == "alerts":
        import tfy_audit._detect.store as store

        _kill_on_nth(store, "write_alerts", n, after=True)
    else:
        raise SystemExit(f"unknown crash phase {phase!r}")


if __name__ == "__main__":
    install(os.environ["TFY_CRASH_AT"])
    from tfy_audit._cli import main as cli

    if os.environ.get("TFY_SIGNAL"):
        sys.argv[0] = "tfy-audit"
        cli.entry()  # the command as installed: its signal handlers, its exit
    sys.exit(cli.main(sys.argv[1:]))
