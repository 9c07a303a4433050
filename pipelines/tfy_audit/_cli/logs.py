"""Logging for the command: one handler on stderr, in one format, for our records and dlt's."""

from __future__ import annotations

import logging
import os


def configure_logging(debug: bool, quiet: bool, json_logs: bool = False) -> None:
    """One handler on stderr, in one format, for our records and dlt's (see progress.py)."""
    from tfy_audit._cli.progress import ForwardHandler, LogHandler
    from tfy_audit._core.redact import install_log_filter

    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = LogHandler(json=json_logs)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(json_logs)  # a Python warning is a record too, not a raw line
    install_log_filter()  # no secret in any log line
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO if debug else logging.WARNING)
    dlt_logger = logging.getLogger("dlt")
    for old in list(dlt_logger.handlers):
        dlt_logger.removeHandler(old)
    # dlt keeps the first handler it finds on its logger and only sets its formatter
    dlt_logger.addHandler(ForwardHandler(handler))
    if not debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
