"""Delivering alerts: a JSON webhook signed with HMAC-SHA256, and Slack's incoming webhooks.
No dlt here: plain httpx, each POST bounded by a timeout, retried with doubling backoff.

At least once, with a stable id: each alert is sent with its `alert_id` (the webhook's body and
its `X-Tfy-Audit-Alert-Id` header), and recorded as delivered only after the receiver answered
2xx, so a crash in between sends it again and a receiver deduplicates by the id. A channel that
still fails after its attempts is left for this run (its remaining alerts stay pending for the
next); all deliveries of a run share one time budget. Nothing here raises for a receiver's
failure: the caller gets what was delivered and what failed, in words safe to print (a URL is
shown as its scheme and host only: Slack's path is its secret, a webhook's may hold one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx

from tfy_audit._core.errors import UsageError
from tfy_audit._core.redact import clean, register_secret
from tfy_audit._core.settings import (
    DELIVERY_ATTEMPTS,
    DELIVERY_BACKOFF_SECONDS,
    DELIVERY_BUDGET_SECONDS,
    DELIVERY_TIMEOUT_SECONDS,
    WEBHOOK_SIGNATURE_HEADER,
)
from tfy_audit._core.version import __version__

logger = logging.getLogger(__name__)

ALERT_ID_HEADER: Final = "X-Tfy-Audit-Alert-Id"
WEBHOOK, SLACK = "webhook", "slack"
_SEVERITY_MARK: Final = {"critical": ":red_circle:", "high": ":large_orange_circle:"}


def shown_url(url: str) -> str:
    """What may be printed of a delivery URL: its scheme and host (and port)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def check_url(url: str, flag: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"{flag} must be an http(s) URL such as https://hooks.example.com/tfy")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(
            f"{flag} {shown_url(url)} is plain http to another host; use https (alerts name "
            "people and resources)"
        )
    # what follows the host can be the credential (Slack's path is its key; Teams and Logic
    # Apps sign in the query): none of it may reach a message or a --debug log line
    register_secret(parts.path if len(parts.path) > 8 else None)
    register_secret(parts.query or None)
    for _, value in parse_qsl(parts.query):
        if len(value) >= 12:  # a signature or token, not `api-version=1.0`
            register_secret(value)
    return url


def signature(body: bytes, secret: str) -> str:
    """GitHub's scheme: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(alert: dict[str, Any]) -> bytes:
    return json.dumps({"type": "tfy-audit.alert", **alert}, sort_keys=True).encode()


def slack_body(alert: dict[str, Any]) -> bytes:
    mark = _SEVERITY_MARK.get(alert["severity"], ":large_yellow_circle:")
    key = ", ".join(f"{k}={v}" for k, v in alert["dedup_key"].items())
    text = (
        f"{mark} *{alert['severity']}* {clean(alert['title'], 200)} "
        f"(`{alert['rule_id']}`, ATT&CK {', '.join(alert['attack'])})\n"
        f"{clean(key, 300)}: {alert['event_count']} event(s) {alert['first_seen']} .. "
        f"{alert['last_seen']}\nalert id `{alert['alert_id']}`"
    )
    return json.dumps({"text": text}).encode()


@dataclass(frozen=True)
class Channel:
    name: str  # webhook | slack
    url: str
    secret: str | None = None

    def request(self, alert: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tfy-audit/{__version__}",
            ALERT_ID_HEADER: alert["alert_id"],
        }
        if self.name == SLACK:
            return slack_body(alert), headers
        body = webhook_body(alert)
        if self.secret:
            headers[WEBHOOK_SIGNATURE_HEADER] = signature(body, self.secret)
        return body, headers


@dataclass
class ChannelResult:
    channel: str
    target: str  # shown_url
    delivered: list[str] = field(default_factory=list)
    failed: str | None = None  # why this run stopped delivering here

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "target": self.target,
            "delivered": len(self.delivered),
            "error": self.failed,
        }


class _Failed(Exception):
    pass


def _post(client: httpx.Client, channel: Channel, alert: dict[str, Any]) -> None:
    body, headers = channel.request(alert)
    try:
        response = client.post(channel.url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise _Failed("no answer in time") from None
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot connect ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise _Failed(f"answered HTTP {response.status_code}")


def deliver(
    channel: Channel,
    alerts: Sequence[dict[str, Any]],
    *,
    on_delivered: Callable[[str], None],
    deadline: float | None = None,
    attempts: int = DELIVERY_ATTEMPTS,
    backoff: float = DELIVERY_BACKOFF_SECONDS,
    timeout: float = DELIVERY_TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> ChannelResult:
    """Send `alerts` in order; `on_delivered(alert_id)` records each one as it is confirmed.
    Stops at the first alert that fails all its attempts, or at `deadline` (monotonic)."""
    result = ChannelResult(channel.name, shown_url(channel.url))
    deadline = deadline if deadline is not None else time.monotonic() + DELIVERY_BUDGET_SECONDS
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for alert in alerts:
            error = ""
            for attempt in range(attempts):
                if time.monotonic() >= deadline:
                    error = "the run's delivery time budget ran out"
                    break
                try:
                    _post(client, channel, alert)
                except _Failed as exc:
                    error = str(exc)
                    pause = backoff * 2**attempt
                    if attempt + 1 < attempts and time.monotonic() + pause < deadline:
                        sleep(pause)
                    continue
                error = ""
                break
            if error:
                result.failed = f"{channel.name} {result.target}: {error}"
                logger.warning(
                    "alert delivery to %s stopped: %s; %d alert(s) stay pending for the next run",
                    channel.name,
                    result.failed,
                    len(alerts) - len(result.delivered),
                )
                return result
            on_delivered(alert["alert_id"])
            result.delivered.append(alert["alert_id"])
    return result
