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
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn

# set by exit_now: the code the process ends with once the exit handlers have run
_code: int | None = None


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
