"""The exception tree of tfy-audit. Every error a user can meet says what happened and what to do.

`TfyAuditError` is the base. `UsageError` means the command line or configuration is wrong
(exit code 2); everything else is a runtime failure (exit code 1).
"""

from __future__ import annotations

import re
from typing import Any


class TfyAuditError(Exception):
    """Base of every error tfy-audit raises on purpose; `str(err)` is one line for the user."""

    exit_code = 1


class UsageError(TfyAuditError):
    """The command line or the configuration is wrong; nothing was contacted or changed."""

    exit_code = 2


class ConfigurationError(UsageError):
    """A required setting is missing or invalid (host, API key, destination...)."""


class SyncAlreadyRunningError(TfyAuditError):
    """Another sync of the same pipeline holds its lock."""


class ApiError(TfyAuditError):
    """The audit-logs endpoint could not be used. Carries the request that failed."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.request_id = request_id


class AuthenticationError(ApiError):
    """401/403: the API key is missing, wrong, or lacks permission to read audit logs."""


class NotAControlPlaneError(ApiError):
    """The host answers, but not like a TrueFoundry control plane (404, HTML, foreign JSON)."""


class RequestRejectedError(ApiError):
    """A 4xx other than auth and rate limits: the service refused the request as sent."""


class OffsetRefusedError(RequestRejectedError):
    """The service refused to page this deep; the caller splits the window and retries."""


class TransientApiError(ApiError):
    """A failure worth retrying (429, 5xx, connection trouble, a cut or garbled body).

    `suspect_host` marks failures that are more likely a wrong host than a passing fault (an
    HTML page or foreign JSON with status 200): the client retries those only a few times."""

    def __init__(self, message: str, *, suspect_host: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.suspect_host = suspect_host


class RetriesExhaustedError(ApiError):
    """A transient failure persisted through every retry."""


class DestinationError(TfyAuditError):
    """Loading into the destination failed."""


_DUCKDB_LOCKED = re.compile(
    r'Could not set lock on file "(?P<file>[^"]+)": Conflicting lock is held in '
    r"(?P<holder>.+?\(PID \d+\))"
)


def explain_destination_failure(exc: BaseException) -> str | None:
    """What a destination failure means and what to do, for the causes a user can fix; None
    for the rest. Looks through the chain of causes, as dlt wraps the driver's errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        locked = _DUCKDB_LOCKED.search(str(current))
        if locked:
            return (
                f"the DuckDB file {locked['file']} is open in another process "
                f"({locked['holder']}), and DuckDB lets one process at a time write to it; close "
                "it there (a DuckDB shell, a notebook, a BI tool) or run again when that "
                "process is done"
            )
        current = current.__cause__ or current.__context__
    return None
