"""What a request asks of the service: the endpoint's filters, and how hard to try.

Plain values, no HTTP: the options, the state and the warehouse name them without importing
the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import DEFAULT_RETRIES


@dataclass(frozen=True)
class AuditLogFilters:
    """The endpoint's filters. Each sync with a different set keeps its own high-water mark."""

    action: str | None = None
    search: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    resource_name: str | None = None
    resource_fqn: str | None = None
    cluster_id: str | None = None
    workspace_id: str | None = None
    subject_slug: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AuditLogFilters:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown filter(s) {unknown}; known filters: {sorted(known)}")
        return cls(**{k: (str(v) if v not in (None, "") else None) for k, v in values.items()})

    def as_dict(self) -> dict[str, str]:
        """The filters that are set, by snake_case name."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def as_params(self) -> dict[str, str]:
        """The query parameters: each field's name in camelCase (`resource_id`: `resourceId`)."""
        return {_camel(k): v for k, v in self.as_dict().items()}

    @property
    def key(self) -> str:
        """A stable name for this filter set, used to keep its sync state apart: `&`-joined
        `name=value`, each value's `%`, `&` and `=` percent-escaped, so no two sets share a
        key. A value without those characters keeps the key it had before they were escaped
        (state.py re-keys the marks stored under such older keys)."""
        d = self.as_dict()
        if not d:
            return "all"
        return "&".join(f"{k}={_escape_key_value(d[k])}" for k in sorted(d))


def _escape_key_value(value: str) -> str:
    return value.replace("%", "%25").replace("&", "%26").replace("=", "%3D")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Backoff is exponential with full jitter; `Retry-After` wins when sent."""

    max_attempts: int = DEFAULT_RETRIES
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    # An unreachable host should fail fast rather than after minutes of backoff.
    connect_attempts: int = 3
    # The most one request waits between its attempts in all: a service asking for long waits
    # (`Retry-After: 999999`) fails the request after this, not after every attempt's wait.
    wait_budget: float = 600.0
