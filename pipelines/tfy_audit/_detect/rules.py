"""Detection rules as data: one YAML file per rule, checked before it runs.

A rule file holds `id`, `title`, `description`, `severity` (one of the severity tiers of
`_warehouse/severity.py`), `attack` (MITRE ATT&CK technique ids), `tables` (what the query
reads), `query`, `dedup` (the query's columns forming the dedup key), and optionally
`threshold` (events per dedup key and window, default 1) and `window` (a duration such as
`1h`, default one day). The query is one SELECT in SQL that DuckDB and PostgreSQL both accept,
returning one row per matching event with columns `event_id`, `created_at` and every `dedup`
column. It names tables as `{dataset}.<table>` and bounds its events by `{start}` and `{end}`
(timestamps the engine fills in); `{timezone}`, `{work_start}` and `{work_end}` are the working
hours of `ViewParams`. It may read any history it needs beyond the range (first-seen rules
compare with everything before `{start}`).

The built-in pack is the package's `pack/` folder (shipped in the wheel); `--rules DIR` adds a
user's folder, whose rules replace built-in ones of the same id. A broken file is one
`RuleProblem` line naming the file and the fault; it never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final

import sqlglot
import yaml
from sqlglot import exp

from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import DEFAULT_RULE_WINDOW
from tfy_audit._core.timeparse import parse_duration
from tfy_audit._warehouse.severity import TIERS

_PACKAGE: Final = "tfy_audit._detect.pack"
_ID: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,63}$")
_ATTACK: Final = re.compile(r"^T\d{4}(\.\d{3})?$")
_COLUMN: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TABLE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
REQUIRED: Final = ("id", "title", "description", "severity", "attack", "tables", "query", "dedup")
OPTIONAL: Final = ("threshold", "window")
# The columns every query returns besides its dedup columns.
EVENT_COLUMNS: Final = ("event_id", "created_at")
PLACEHOLDERS: Final = ("{dataset}", "{start}", "{end}")
_KNOWN_PLACEHOLDER: Final = re.compile(r"\{(dataset|start|end|timezone|work_start|work_end)\}")
_ANY_PLACEHOLDER: Final = re.compile(r"\{[a-z_]+\}")


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    description: str
    severity: str
    attack: tuple[str, ...]
    tables: tuple[str, ...]
    query: str
    dedup: tuple[str, ...]
    threshold: int
    window: timedelta
    origin: str  # the file it came from, for messages

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "attack": list(self.attack),
            "tables": list(self.tables),
            "dedup": list(self.dedup),
            "threshold": self.threshold,
            "window_seconds": int(self.window.total_seconds()),
            "origin": self.origin,
        }


@dataclass(frozen=True)
class RuleProblem:
    """A rule file that cannot be used: the file and the fault, one line."""

    origin: str
    fault: str

    def line(self) -> str:
        return f"{self.origin}: {self.fault}"


class RuleError(ValueError):
    """One fault of one rule file (its message is the fault alone)."""


def _text(data: dict[str, Any], key: str, limit: int = 2000) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise RuleError(f"{key} is longer than {limit} characters")
    return value.strip()


def _names(data: dict[str, Any], key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    value = data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RuleError(f"{key} must be a non-empty list")
    out = []
    for item in value:
        if not isinstance(item, str) or not pattern.match(item):
            raise RuleError(f"{key} has {str(item)[:40]!r}, which does not match {pattern.pattern}")
        out.append(item)
    return tuple(out)


def check_query(query: str, dedup: Iterable[str]) -> None:
    """The query is one SELECT with the placeholders the engine fills in, returning the
    event columns and every dedup column (checked on its outermost projection)."""
    for placeholder in PLACEHOLDERS:
        if placeholder not in query:
            raise RuleError(f"query lacks the placeholder {placeholder}")
    unknown = set(_ANY_PLACEHOLDER.findall(query)) - {
        m.group(0) for m in _KNOWN_PLACEHOLDER.finditer(query)
    }
    if unknown:
        raise RuleError(f"query has unknown placeholder(s) {', '.join(sorted(unknown))}")
    sample = _KNOWN_PLACEHOLDER.sub(_sample_value, query)
    try:
        statements = [s for s in sqlglot.parse(sample, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as exc:  # a parse or a tokenizer error (a stray quote)
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise RuleError(f"query does not parse: {first[:160]}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise RuleError("query must be exactly one SELECT statement")
    names = {(e.alias_or_name or "").lower() for e in statements[0].selects if not e.is_star}
    missing = [c for c in (*EVENT_COLUMNS, *dedup) if c not in names]
    if missing:
        raise RuleError(f"query does not return column(s) {', '.join(missing)}")


def _sample_value(match: re.Match[str]) -> str:
    name = match.group(1)
    if name == "dataset":
        return "ds"
    if name in ("start", "end"):
        return "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    if name == "timezone":
        return "UTC"
    return "8"


def parse_rule(text: str, origin: str) -> Rule:
    """A rule from a file's text; RuleError names the fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RuleError(f"not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise RuleError("must be a YAML mapping of the rule's fields")
    unknown = sorted(str(k) for k in data if k not in (*REQUIRED, *OPTIONAL))
    if unknown:
        raise RuleError(
            f"unknown field(s) {', '.join(unknown)}; known: {', '.join(REQUIRED + OPTIONAL)}"
        )
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise RuleError(f"missing field(s) {', '.join(missing)}")
    rule_id = _text(data, "id", 64)
    if not _ID.match(rule_id):
        raise RuleError(f"id {rule_id!r} must be lower-case letters, digits, '.', '_' or '-'")
    severity = _text(data, "severity", 20)
    if severity not in TIERS:
        raise RuleError(f"severity {severity!r} is not one of {', '.join(TIERS)}")
    dedup = _names(data, "dedup", _COLUMN)
    query = _text(data, "query", 20_000)
    check_query(query, dedup)
    threshold = data.get("threshold", 1)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise RuleError(f"threshold must be a whole number of at least 1, not {threshold!r}")
    window = DEFAULT_RULE_WINDOW
    if "window" in data:
        try:
            window = parse_duration(str(data["window"]), "window")
        except UsageError:
            raise RuleError(
                f"window {str(data['window'])[:20]!r} is not a duration like 1h"
            ) from None
        if window <= timedelta(0) or window > timedelta(days=31):
            raise RuleError("window must be more than 0 and at most 31d")
    return Rule(
        id=rule_id,
        title=_text(data, "title", 200),
        description=_text(data, "description"),
        severity=severity,
        attack=_names(data, "attack", _ATTACK),
        tables=_names(data, "tables", _TABLE),
        query=query,
        dedup=dedup,
        threshold=threshold,
        window=window,
        origin=origin,
    )


def _read(path: Path, origin: str) -> Rule | RuleProblem:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return RuleProblem(origin, f"cannot be read ({type(exc).__name__}); check the file")
    try:
        return parse_rule(text, origin)
    except RuleError as exc:
        return RuleProblem(origin, str(exc))


def read_folder(folder: str | Path) -> tuple[list[Rule], list[RuleProblem]]:
    """Every `*.yaml` / `*.yml` rule in `folder` (not recursive), sorted by file name. A
    missing folder is a usage error; a broken file is a problem, not an error."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"rules folder {folder} does not exist or is not a folder; pass a folder of "
            "*.yaml rules"
        )
    rules: list[Rule] = []
    problems: list[RuleProblem] = []
    for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
        got = _read(file, str(file))
        (rules if isinstance(got, Rule) else problems).append(got)  # type: ignore[arg-type]
    _duplicates(rules, problems)
    return rules, problems


def builtin_rules() -> list[Rule]:
    """The pack shipped with the package; a broken built-in rule is a packaging bug."""
    rules = []
    for entry in sorted(resources.files(_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            rules.append(parse_rule(entry.read_text(encoding="utf-8"), f"built-in {entry.name}"))
    return rules


def _duplicates(rules: list[Rule], problems: list[RuleProblem]) -> None:
    seen: dict[str, Rule] = {}
    for rule in list(rules):
        if rule.id in seen:
            rules.remove(rule)
            problems.append(
                RuleProblem(rule.origin, f"id {rule.id!r} is also used by {seen[rule.id].origin}")
            )
        else:
            seen[rule.id] = rule


def load_rules(extra: str | Path | None = None) -> tuple[list[Rule], list[RuleProblem]]:
    """The built-in pack plus the rules of `extra` (a user's rule replaces a built-in one of
    the same id), and the problems of the user's files."""
    rules = {r.id: r for r in builtin_rules()}
    problems: list[RuleProblem] = []
    if extra is not None:
        user, problems = read_folder(extra)
        rules.update({r.id: r for r in user})
    return sorted(rules.values(), key=lambda r: r.id), problems
