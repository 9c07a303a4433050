"""What the command writes: its exit codes, the user's lines on stderr, the `--json` document.

Exit codes: 0 success; 1 a runtime failure (service, network, destination); 2 a usage or
configuration error; 3 the data is incomplete (`verify` found days that differ, or `sync` could
not read a window completely); 120 output lost (stdout's reader went away, e.g. `| head`);
130/143 interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from tfy_audit._core.errors import TfyAuditError, UsageError

logger = logging.getLogger("tfy_audit")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_LOST_OUTPUT = 120  # as process.py's prompt exit, and Python's own, on output it lost
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM

STATUS = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "failed",
    EXIT_USAGE: "usage_error",
    EXIT_INCOMPLETE: "incomplete",
    EXIT_SIGINT: "interrupted",
    EXIT_SIGTERM: "interrupted",
}


class Mode:
    """How this run writes, set by `main()` from the command line before anything is written."""

    # the command line asks for --json: even a line that does not parse gets its JSON document
    wants_json: tuple[str, ...] | None = None
    # log lines (and the user's lines) are JSON records (`--log-format json`)
    json_logs = False


@dataclass
class Outcome:
    """What a command ends with: its exit code and, under --json, the document's fields."""

    code: int
    fields: dict[str, Any] = field(default_factory=dict)


def exit_code_for(error: TfyAuditError) -> int:
    """The exit code of a run that ended in `error`: a usage error (the command line or the
    configuration is wrong; nothing was contacted or changed) is 2, any other failure 1."""
    return EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILURE


def say(text: str, level: int = logging.ERROR, **fields: Any) -> None:
    """A line for the user on stderr: as written, or a JSON record under `--log-format json`
    (its message without the `tfy-audit: error: ` prefix, `fields` as its keys)."""
    if not Mode.json_logs:
        print(text, file=sys.stderr, flush=True)
        return
    from tfy_audit._cli.logjson import fields as record_fields

    message = text.removeprefix("tfy-audit: ").removeprefix("error: ")
    event = str(fields.pop("event", "exit"))
    logger.log(level, "%s", message, extra=record_fields(event, **fields))


def print_json(command: str, code: int, fields: dict[str, Any], error: str | None) -> None:
    document = {
        "command": command,
        "status": STATUS.get(code, "failed"),
        "exit_code": code,
        "error": error,
        **fields,
    }
    # on one line under JSON logs: a scheduler may merge stdout into the same log stream
    indent = None if Mode.json_logs else 2
    print(json.dumps(document, indent=indent, default=str), flush=True)
