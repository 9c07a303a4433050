"""Keeping secrets and a server's control characters out of what tfy-audit prints and logs.

Secrets (the API key) are registered once, when they are read; `redact` then replaces every
occurrence in a text. `RedactingFilter`, on the log handlers, applies it to each record, so a
key a library or a server echoes never reaches a log. `clean` makes a text one could print on a
terminal: no control characters (escape sequences included), one line, cut to a length.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[redacted]"
# Shorter values are not worth hiding and would mangle ordinary words.
_MIN_SECRET = 4

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()

# ESC sequences (CSI, OSC, DCS/PM/APC strings, two-byte), then any other control character:
# C0 and DEL, C1, and the Unicode formatting marks that reorder or hide text.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]+")

# What the service says, at most: enough for any real error message.
SERVICE_TEXT_MAX = 300


def register_secret(value: str | None) -> None:
    """Hide `value` (and its stripped form) from every message and log record from now on."""
    if not value:
        return
    global _pattern
    with _lock:
        new = {v for v in (value, value.strip()) if len(v) >= _MIN_SECRET} - _secrets
        if not new:
            return
        _secrets.update(new)
        # longest first, so a key's stripped form never leaves its whitespace-padded tail
        alternatives = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def clean(text: str, limit: int | None = None) -> str:
    """`text` as one printable line: escape sequences and control characters go (a line break
    or a tab becomes a space), and the rest is cut to `limit` characters with an ellipsis."""
    if not text.isprintable():
        text = _CONTROLS.sub(" ", _ESCAPES.sub("", text))
        text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


class RedactingFilter(logging.Filter):
    """Redacts registered secrets from a record's message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            # a traceback is formatted from the exception later, past this filter: format it
            # here, so that it is redacted too
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = RedactingFilter()


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Put the redacting filter on every handler of `logger` (the root by default), and on
    Python's last-resort handler; idempotent."""
    target = logger or logging.getLogger()
    handlers = [*target.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
