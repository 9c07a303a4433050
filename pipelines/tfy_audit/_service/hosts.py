"""What a `--host` may be: a control plane's URL with its scheme, no credentials in it, and
TLS unless the host is this machine (or plain HTTP is allowed explicitly).

Checked before any request: the API key goes with every request, so a host that would carry it
in clear, or one that would replace it with Basic auth, is refused rather than tried.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tfy_audit._core.errors import UsageError


@dataclass(frozen=True)
class HostSource:
    """Where the host came from, so a message names what the user set and how to fix it."""

    name: str  # `--host`, `TFY_HOST`, ...
    fix: str  # how to set it to a URL, `{url}` standing for the URL

    def set_to(self, url: str) -> str:
        return self.fix.format(url=url)


FLAG = HostSource("--host", "pass {url}")
ENVIRONMENT = HostSource("TFY_HOST", "set TFY_HOST={url}")
DLT_CONFIG = HostSource(
    "sources.truefoundry_audit.host", 'set sources.truefoundry_audit.host = "{url}"'
)
LOGIN = HostSource("the host of `tfy login`", "run `tfy login --host {url}`")


def is_loopback(hostname: str) -> bool:
    name = hostname.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def normalize_host(
    host: str, *, allow_insecure_http: bool = False, source: HostSource = FLAG
) -> str:
    """`https://app.example.com/` -> `https://app.example.com`; UsageError for a host without
    a scheme, with a user or password in it, or on plain HTTP to another machine (unless
    `allow_insecure_http`). The message names `source`, where the host was set."""
    host = host.strip()
    if not host:
        raise UsageError("the TrueFoundry host is empty; set TFY_HOST or pass --host")
    if "://" not in host:
        # `name:port` parses as a scheme and a path, so the userinfo check comes first
        if "@" in host:
            raise _credentials_in_host(source)
        bare = host.rstrip("/")
        name = urlsplit("//" + bare).hostname or bare
        local = f" (or http://{bare} for a server on this machine)" if is_loopback(name) else ""
        fix = source.set_to(f"https://{bare}")
        raise UsageError(f"{source.name} {bare!r} has no scheme; {fix}{local}")
    parts = urlsplit(host)
    if "@" in parts.netloc:
        raise _credentials_in_host(source)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        if source is FLAG:
            raise UsageError(
                f"{host!r} is not a control plane URL; pass --host like "
                "https://your-org.truefoundry.cloud"
            )
        fix = source.set_to("https://your-org.truefoundry.cloud")
        raise UsageError(f"{source.name} {host!r} is not a control plane URL; {fix}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise UsageError(
            f"{source.name} {parts.scheme}://{parts.netloc} would send the API key unencrypted; "
            f"use https://{parts.netloc}, or pass --allow-insecure-http if this network is trusted"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _credentials_in_host(source: HostSource) -> UsageError:
    # the host is not echoed: what is before the @ may be a password
    return UsageError(
        f"{source.name} holds a user name or password (user:password@...); remove it: tfy-audit "
        "authenticates with the API key (TFY_API_KEY) only"
    )
