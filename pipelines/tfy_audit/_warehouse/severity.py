"""Severity tiers of sensitive actions, defined once as data.

The built-in rules are `tfy_audit/sql/severity_rules.csv`; a user's file with the same columns
(`severity,action,resource_type,resource_name`) extends them and takes precedence. The rules are
inlined into the `sensitive_actions` view as a `VALUES` list, so the view and the report (which
reads through the view's SELECT) classify every event the same way.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from tfy_audit._core.errors import UsageError
from tfy_audit._warehouse.sql_text import sql_string

# Most severe first; the position is the tier's rank.
TIERS: Final[tuple[str, ...]] = ("critical", "high", "notable")
DEFAULT_TIER: Final = "notable"
ANY: Final = "*"
_COLUMNS: Final = ("severity", "action", "resource_type", "resource_name")
# A user's rules sort before every built-in one, whatever their tier.
_BUILTIN_OFFSET: Final = 10
_SAFE: Final = re.compile(r"^[\w.:@/*-]{1,200}$")


@dataclass(frozen=True)
class SeverityRule:
    severity: str
    action: str = ANY
    resource_type: str = ANY
    resource_name: str = ANY


def _parse(text: str, origin: str) -> tuple[SeverityRule, ...]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(lines)))
    rows = list(reader)
    if not rows or tuple(c.strip() for c in rows[0]) != _COLUMNS:
        raise UsageError(f"{origin}: the first line must be the header {','.join(_COLUMNS)}")
    rules = []
    for number, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        if len(cells) != len(_COLUMNS):
            raise UsageError(f"{origin}: rule {number} needs {len(_COLUMNS)} columns; fix it")
        severity, action, rtype, name = cells
        if severity not in TIERS:
            raise UsageError(
                f"{origin}: rule {number} has severity {severity!r}; use one of {', '.join(TIERS)}"
            )
        for value in (action, rtype, name):
            if not _SAFE.match(value):
                raise UsageError(
                    f"{origin}: rule {number} has an unexpected value {value[:40]!r}; use "
                    "letters, digits, '_-.:@/' or '*'"
                )
        rules.append(SeverityRule(severity, action.upper(), rtype.lower(), name))
    return tuple(rules)


def builtin_rules() -> tuple[SeverityRule, ...]:
    text = (
        resources.files("tfy_audit._warehouse.sql")
        .joinpath("severity_rules.csv")
        .read_text("utf-8")
    )
    return _parse(text, "severity_rules.csv")


def load_rules(path: str | Path) -> tuple[SeverityRule, ...]:
    """A user's rules file; a missing or malformed file is a usage error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read severity rules {path}: {exc.strerror}; check the path"
        ) from None
    return _parse(text, str(path))


def rules_values(user_rules: tuple[SeverityRule, ...] = ()) -> str:
    """The rules as a SQL `VALUES` list with columns (severity, rank, action, resource_type,
    resource_name): a user's rules first, then the built-in ones."""
    rows = []
    for offset, rules in ((0, user_rules), (_BUILTIN_OFFSET, builtin_rules())):
        for rule in rules:
            rank = offset + TIERS.index(rule.severity)
            values = (rule.action, rule.resource_type, rule.resource_name)
            quoted = ", ".join(sql_string(v) for v in values)
            rows.append(f"('{rule.severity}', {rank}, {quoted})")
    return "(VALUES\n        " + ",\n        ".join(rows) + "\n    )"
