"""The host and token that `tfy login` (TrueFoundry's own CLI) leaves in
`~/.truefoundry/credentials.json`: `{"host": ..., "access_token": ..., "refresh_token": ...}`.

The last place `config.py` looks, after flags, dlt config and `TFY_HOST` / `TFY_API_KEY`. The
file is only read: refreshing the token, and so writing the file, is `tfy login`'s job. An
access token that is a JWT whose `exp` has passed stops the run before any request is sent;
a token that is not a JWT (a PAT) is used as it is. The token never appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tfy_audit._core.errors import ConfigurationError

logger = logging.getLogger(__name__)

# as TrueFoundry's CLI names it: `Path.home() / ".truefoundry" / "credentials.json"`; no
# environment variable moves it, so `HOME` does
DISPLAY_PATH = "~/.truefoundry/credentials.json"


def credentials_path() -> Path | None:
    """Where `tfy login` writes, under the current `HOME` (read at each call); None when the
    user has no home directory (a container's uid with neither `HOME` nor a passwd entry)."""
    try:
        return Path.home() / ".truefoundry" / "credentials.json"
    except RuntimeError:
        return None


@dataclass(frozen=True)
class LoginCredentials:
    host: str
    access_token: str = field(repr=False)


def read_login_credentials(path: Path | None = None) -> LoginCredentials | None:
    """The file's host and access token; None when there is no file. A file that is there but
    is not what `tfy login` writes is a configuration error, not a silent fallback."""
    path = path or credentials_path()
    if path is None:
        return None
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {DISPLAY_PATH} ({exc.strerror or type(exc).__name__}): make it "
            "readable, run `tfy login` again, or set TFY_HOST and TFY_API_KEY"
        ) from None
    try:
        content = json.loads(raw)
    except ValueError:
        content = None
    host = content.get("host") if isinstance(content, dict) else None
    token = content.get("access_token") if isinstance(content, dict) else None
    if not (isinstance(host, str) and host and isinstance(token, str) and token):
        raise ConfigurationError(
            f"{DISPLAY_PATH} is not what `tfy login` writes (a JSON object with a host and an "
            "access_token): run `tfy login` again, or set TFY_HOST and TFY_API_KEY"
        )
    return LoginCredentials(host=host, access_token=token)


def login_host() -> str | None:
    """The host `tfy login` logged in to, or None without a credentials file."""
    found = read_login_credentials()
    return found.host if found else None


def login_token(host: str | None) -> str | None:
    """The `tfy login` access token, for `host` (None: the file's own host); None without a
    credentials file. Raises when the token is for another host (it is never sent elsewhere)
    or is a JWT that has expired."""
    found = read_login_credentials()
    if found is None:
        return None
    if host is not None and _origin(host) != _origin(found.host):
        raise ConfigurationError(
            f"no TrueFoundry API key for {host}: the `tfy login` credentials in {DISPLAY_PATH} "
            f"are for {found.host}; run `tfy login --host {host}`, or set TFY_API_KEY"
        )
    expires = jwt_expiry(found.access_token)
    if expires is not None and expires <= datetime.now(UTC):
        raise ConfigurationError(
            f"the `tfy login` token in {DISPLAY_PATH} expired at "
            f"{expires.isoformat().replace('+00:00', 'Z')}: run `tfy login` again, or set a "
            "PAT or virtual-account token in TFY_API_KEY for scheduled runs"
        )
    logger.debug("using the `tfy login` credentials in %s for %s", DISPLAY_PATH, found.host)
    return found.access_token


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT, read without verifying its signature (only the service can);
    None when the token is not a JWT or carries no numeric `exp`."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")
