"""The exception tree of tfy-audit. Every error a user can meet says what happened and what to do.

`TfyAuditError` is the base. `UsageError` means the command line or configuration is wrong
(exit code 2); everything else is a runtime failure (exit code 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tfy_audit._core.redact import SERVICE_TEXT_MAX, clean, redact

# How long `one_line` makes an exception unless told: enough for a database's message with
# its object names, short enough for one line of a log or a run record.
ONE_LINE_MAX = 500


def one_line(exc: BaseException, limit: int = ONE_LINE_MAX) -> str:
    """`exc`'s message on one line (runs of white space folded to one space), cut at `limit`
    characters: for a message or record that quotes an error it did not write itself."""
    return " ".join(str(exc).split())[:limit]


class TfyAuditError(Exception):
    """Base of every error tfy-audit raises on purpose; `str(err)` is one line for the user.

    The one place messages are made safe to print: registered secrets are redacted and
    control characters removed, whatever went into the message. Which exit code an error
    means is the command's choice (`_cli/output.exit_code_for`)."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(redact(clean(str(message))), *args)


class UsageError(TfyAuditError):
    """The command line or the configuration is wrong; nothing was contacted or changed."""


class ConfigurationError(UsageError):
    """A required setting is missing or invalid (host, API key, destination...)."""


class SyncAlreadyRunningError(TfyAuditError):
    """Another sync of the same pipeline holds its lock."""


class RunDeadlineError(TfyAuditError):
    """The run reached `--max-duration`; what was committed before stays."""


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


class RequestNotSentError(ApiError):
    """Our own request could not be sent as built (an HTTP protocol error on our side):
    retrying would send the same request again."""


class ResponseTooLargeError(ApiError):
    """A response body went past the size cap; none of it is used.

    `holds_event`: its first bytes show a page of events (the fetcher then asks for fewer, and
    sets aside one event that is too large by itself); `event_id`: the first event's id, if its
    first bytes hold it; `cap`: the cap, in bytes."""

    def __init__(
        self,
        message: str,
        *,
        holds_event: bool = False,
        event_id: str | None = None,
        cap: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.holds_event = holds_event
        self.event_id = event_id
        self.cap = cap


class ImplausibleCountError(ApiError):
    """The service answered a count no audit trail can hold, or counts that do not add up."""


def service_text(text: str | None) -> str:
    """What a service (or a wrong host) says, made fit to quote in a message: one line, no
    control characters or escape sequences, a few hundred characters at most."""
    return clean(text or "", SERVICE_TEXT_MAX)


class DestinationError(TfyAuditError):
    """Loading into the destination failed."""


class PublishError(TfyAuditError):
    """The sync loaded its data, but its `--publish` snapshot could not be written; the
    previous snapshot stays."""


_DUCKDB_LOCKED = re.compile(
    r'Could not set lock on file "(?P<file>[^"]+)": Conflicting lock is held in '
    r"(?P<holder>.+?\(PID \d+\))"
)


def explain_database_in_use(exc: BaseException) -> str | None:
    """One line when `exc` says another process has the DuckDB file open (DuckDB's lock);
    None otherwise."""
    for current in exception_chain(exc):
        locked = _DUCKDB_LOCKED.search(str(current))
        if locked:
            return (
                f"the DuckDB file {locked['file']} is open in another process "
                f"({locked['holder']}), and DuckDB lets one process at a time write to it; close "
                "it there (a DuckDB shell, a notebook, a BI tool) or run again when that "
                "process is done; dashboards can read the snapshot `tfy-audit sync --publish "
                "PATH` writes instead"
            )
    return None


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and its causes (or contexts), each once: dlt wraps the driver's errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@dataclass(frozen=True)
class ConfigLookup:
    """One place dlt looked for a configuration value: its provider ("Environment
    Variables", a TOML file), the sections it looked in and the key it read."""

    provider: str
    sections: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class UnresolvedField:
    """A configuration field dlt could not resolve: the configuration class it belongs to,
    its name, and where dlt looked for it."""

    owner: str
    name: str
    lookups: tuple[ConfigLookup, ...]


def _where_to_set(field_name: str, lookups: Sequence[ConfigLookup]) -> str:
    """The environment variable and the secrets.toml key that set a field: the most specific
    lookup dlt tried that is not scoped to one pipeline."""
    env = [t for t in lookups if t.provider == "Environment Variables"]
    if not env:
        return f"set {field_name} in .dlt/secrets.toml"
    most = max(len(t.sections) for t in env)
    best = min((t for t in env if len(t.sections) == most), key=lambda t: len(t.key))
    toml_key = ".".join([*best.sections, field_name])
    return f"set {best.key} (or {toml_key} in .dlt/secrets.toml)"


def _missing_parts(missing: Sequence[UnresolvedField]) -> list[str]:
    """A phrase per missing field; the fields of one configuration missing together (a whole
    credentials section) as one phrase naming the section."""
    by_owner: dict[str, list[tuple[str, tuple[ConfigLookup, ...]]]] = {}
    for field in missing:
        by_owner.setdefault(field.owner, []).append((field.name, field.lookups))
    parts: list[str] = []
    for owner, fields in by_owner.items():
        if len(fields) == 1:
            name, lookups = fields[0]
            parts.append(f"`{name}` of {owner}: {_where_to_set(name, lookups)}")
            continue
        names = ", ".join(name for name, _ in fields)
        where = _where_to_set(*fields[0])  # "set A__B__FIELD (or a.b.field in ...)"
        env = where.split()[1].rpartition("__")[0] if "__" in where else ""
        section = where.split("(or ")[-1].split()[0].rpartition(".")[0] if "(or " in where else ""
        if env and section:
            parts.append(
                f"{names} of {owner}: set {env} (a connection URL) or the [{section}] section "
                "of .dlt/secrets.toml"
            )
        else:
            parts.append(f"{names} of {owner}: set them in .dlt/secrets.toml")
    return parts


def describe_missing_configuration(missing: Sequence[UnresolvedField]) -> str:
    """One line naming the fields a destination's configuration lacks and where to set each."""
    hint = ""
    if [(f.name, "Postgres" in f.owner) for f in missing] == [("password", True)]:
        hint = (
            "; with trust or peer auth any password will do, e.g. "
            "postgresql://postgres:pw@host:5432/db"
        )
    return "the destination's configuration lacks " + "; ".join(_missing_parts(missing)) + hint


def describe_invalid_configuration(exc: BaseException) -> str:
    """One line for a configuration dlt refused (a configuration error other than a missing
    field)."""
    first = service_text(str(exc).strip().splitlines()[0] if str(exc) else "")
    return (
        f"the destination's configuration is invalid ({type(exc).__name__}: {first}); "
        "check its settings in .dlt/config.toml, .dlt/secrets.toml or DESTINATION__* "
        "environment variables"
    )
