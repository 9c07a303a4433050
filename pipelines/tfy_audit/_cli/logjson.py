"""Log records as JSON lines (`--log-format json`), for a log shipper.

Each record is one JSON object on one line: `time` (ISO 8601, UTC), `level`, `logger`,
`message`, `run_id` (one per process), `traceback` when the record carries one, and the
record's structured fields. A caller gives those fields with `extra=fields("progress", ...)`:
the text format ignores them, the JSON format writes them as top-level keys (`event` names the
kind of record), never over the keys above. Every string is redacted of registered secrets,
fields included (the redacting filter only sees the message), and the line is ASCII, so no
character in it can split it.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tfy_audit._core.redact import redact
from tfy_audit._core.settings import DEFAULT_LOG_FORMAT, LOG_FORMAT_ENV

# The id of this process's run, on each of its JSON records.
RUN_ID = uuid.uuid4().hex

# The LogRecord attribute that carries a record's structured fields.
FIELDS = "tfy_fields"


def fields(event: str, **values: Any) -> dict[str, Any]:
    """`extra=` for a logging call: the record's kind and its structured fields."""
    return {FIELDS: {"event": event, **values}}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "run_id": RUN_ID,
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            document["traceback"] = redact(record.exc_text)
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                document.setdefault(str(key), _redacted(value))
        return json.dumps(document, default=lambda v: redact(str(v)), separators=(",", ":"))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def requested_format(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> str:
    """The log format a command line asks for, read before it is parsed (so that a line that
    does not parse is refused in that format): `--log-format`, else the environment."""
    chosen = (os.environ if environ is None else environ).get(LOG_FORMAT_ENV) or DEFAULT_LOG_FORMAT
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--log-format="):
            chosen = arg.partition("=")[2]
    return chosen


def line(level: int, name: str, message: str, **values: Any) -> str:
    """One record as a JSON line, with no logging set up (a command line that does not parse)."""
    record = logging.LogRecord(name, level, __file__, 0, message, None, None)
    if values:
        setattr(record, FIELDS, values)
    return JsonFormatter().format(record)
