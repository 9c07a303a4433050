"""Where host and API key come from: explicit values, dlt config/secrets, or TrueFoundry's own
`TFY_HOST` / `TFY_API_KEY` environment variables, then `tfy login`'s credentials file (in that
order; see credentials.py)."""

from __future__ import annotations

import logging
import os

import dlt

from tfy_audit._core.errors import ConfigurationError
from tfy_audit._core.redact import register_secret
from tfy_audit._service.credentials import login_host, login_token
from tfy_audit._service.hosts import (
    DLT_CONFIG,
    ENVIRONMENT,
    FLAG,
    LOGIN,
    HostSource,
    normalize_host,
)

logger = logging.getLogger(__name__)


def _from_dlt(key: str, secret: bool = False) -> str | None:
    """`sources.truefoundry_audit.<key>` from .dlt/*.toml or SOURCES__TRUEFOUNDRY_AUDIT__<KEY>."""
    provider = dlt.secrets if secret else dlt.config
    try:
        value: object = provider.get(f"sources.truefoundry_audit.{key}")
    except Exception:  # an unreadable config file is reported by dlt itself when it matters
        return None
    return str(value) if value else None


def resolve_host(host: str | None) -> str:
    return host_and_source(host)[0]


def resolve_checked_host(host: str | None, *, allow_insecure_http: bool = False) -> str:
    """The host, normalized and checked (hosts.py); a bad one is refused naming where it was
    set (`--host`, `TFY_HOST`, dlt config, `tfy login`)."""
    value, source = host_and_source(host)
    return normalize_host(value, allow_insecure_http=allow_insecure_http, source=source)


def host_and_source(host: str | None) -> tuple[str, HostSource]:
    configured, environment = _from_dlt("host"), os.environ.get("TFY_HOST")
    login = None if host or configured or environment else login_host()
    value = host or configured or environment or login
    if not host and configured and environment and configured.strip() != environment.strip():
        logger.warning(
            "using the host %s from dlt config (sources.truefoundry_audit.host); TFY_HOST (%s) "
            "is ignored: pass --host to choose",
            configured.rpartition("@")[2],  # a password in a host is refused, not shown
            environment.rpartition("@")[2],
        )
    if not value:
        raise ConfigurationError(
            "no TrueFoundry host: set TFY_HOST (or pass --host, or sources.truefoundry_audit.host "
            "in .dlt/config.toml) to your control plane URL, e.g. https://your-org.truefoundry.cloud"
        )
    source = FLAG if host else DLT_CONFIG if configured else ENVIRONMENT if environment else LOGIN
    return value, source


def resolve_api_key(api_key: str | None, host: str | None = None) -> str:
    """`host`: where the key will be sent; `tfy login`'s token is never sent to another."""
    value = api_key or _from_dlt("api_key", secret=True) or os.environ.get("TFY_API_KEY")
    value = value or login_token(host)
    register_secret(value)
    if not value:
        raise ConfigurationError(
            "no TrueFoundry API key: set TFY_API_KEY (or sources.truefoundry_audit.api_key in "
            ".dlt/secrets.toml) to a PAT or virtual-account token that may read audit logs"
        )
    return value
