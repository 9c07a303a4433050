"""The `tfy-audit` process's own exit: the exit handlers run, the interpreter's teardown does not.

Freeing every object of dlt, pyarrow and DuckDB one by one at exit takes a noticeable share of
a scheduled sync and changes nothing on disk. `exit_now` ends the process through the ordinary
`sys.exit`, so the interpreter itself waits for non-daemon threads and runs every exit handler;
the last handler to run is `_exit_promptly`, which flushes the output and ends the process
there, before the teardown.

`atexit` runs its handlers last registered, first run: `_exit_promptly` is registered when
this module is imported, which the `_cli` package does before any of its modules registers a
handler (logging's flush among them), so every handler registered later runs before it; a
test holds that order. Registered but idle: it does nothing unless `exit_now` was called, so
`main()` called as a library, or a `SystemExit` raised elsewhere, ends as Python ends.

The command's imports (dlt, pyarrow, DuckDB, httpx: some 165,000 objects, nearly all kept for
the life of the process) run between `begin_imports` and `end_imports`:
- with the cyclic collector paused, which would otherwise walk them again and again as they
  are made; `end_imports` freezes what the imports made, out of later collections' sight, and
  starts the collector again before the command does any work;
- without httpx's own command line, which httpx imports with click, rich and pygments when
  they are installed (dlt's dependencies install them); the command never runs it, and
  `end_imports` lets a later `import httpx._main` import it after all;
- with dlt's requests helper imported only when something uses it (`_compat/deferred.py`),
  not by dlt's start, which only configures it.
Only the command's own process does this: a library's caller's collector and imports are not
ours to change.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn

from tfy_audit._compat.deferred import defer_requests_helper

# set by exit_now: the code the process ends with once the exit handlers have run
_code: int | None = None
# set by begin_imports: the collector is off until end_imports
_collector_paused = False
# the module httpx imports its command line from (`from ._main import main`, ImportError: none)
_HTTPX_CLI = "httpx._main"


def begin_imports() -> None:
    """Ready the process for the command's imports (see the module docstring)."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True
    if "httpx" not in sys.modules:
        sys.modules.setdefault(_HTTPX_CLI, None)  # type: ignore[arg-type]
    defer_requests_helper()


def end_imports() -> None:
    """Undo `begin_imports`: freeze what is alive and start the collector again (a few
    hundred objects of the imports' cyclic garbage are frozen with the rest), and let httpx's
    command line be imported. Does nothing where `begin_imports` was not called."""
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()
    if _HTTPX_CLI in sys.modules and sys.modules[_HTTPX_CLI] is None:
        del sys.modules[_HTTPX_CLI]


def exit_now(code: int) -> NoReturn:
    """End the process with `code` once the exit handlers have run, skipping the teardown."""
    global _code
    _code = code
    sys.exit(code)


def _exit_promptly() -> None:
    if _code is None:
        return
    if "logging" in sys.modules:
        # a handler registered before this one has not run yet: logging's flush is the one
        # the command depends on (imported first, it is registered after this one)
        import logging

        logging.shutdown()
    lost_output = False
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            lost_output = True
    # Like the interpreter's own exit: output that could not be written (a closed pipe, a full
    # disk) turns success into 120, so a scheduler does not take a lost summary for a good run.
    os._exit(120 if lost_output and _code == 0 else _code)


atexit.register(_exit_promptly)
