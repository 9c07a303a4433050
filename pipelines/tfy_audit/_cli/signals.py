"""SIGINT and SIGTERM in the `tfy-audit` process: both end the run the way Ctrl-C does."""

from __future__ import annotations

import signal
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup
    runs (the lock released, worker processes stopped, committed chunks kept)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    _ignore_signals()
    raise Terminated()


def _on_sigint(signum: int, frame: Any) -> None:
    _ignore_signals()
    raise KeyboardInterrupt()


def _ignore_signals() -> None:
    """After the first signal the run is ending: a second one must not cut its cleanup (the
    lock, the worker processes) short with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def install_signal_handlers() -> None:
    """A signal the command was started ignoring (SIGINT in a shell script's background job)
    stays ignored, as Python itself leaves it."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _on_sigterm)
