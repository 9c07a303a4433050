"""How values read as text on the page: the filters and helpers the templates call.

A value from the data (all of it written by users of the audited system, or by the service)
reaches the page escaped: through autoescaping, or here through `html.escape`, whose output is
marked safe so it is not escaped twice. An absent value reads as a dash.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, Final

from markupsafe import Markup

from tfy_audit._report.data import ReportData
from tfy_audit._warehouse.severity import TIERS

DASH: Final = "—"

# Values that have a badge colour of their own (`badge.<value>` in the style sheet).
BADGES: Final = frozenset(
    {"secret", "token", "access", "identity", "deletion", "other", "grant", "change", "revoke"}
    | set(TIERS)
)


def text(value: Any) -> Markup:
    """Escaped text of a value; an absent value is a dash."""
    if value is None or value == "":
        return Markup(DASH)
    return Markup(html.escape(str(value), quote=True))


def code(value: Any) -> Markup:
    """An identifier such as an action name, breakable after its underscores."""
    if value is None or value == "":
        return Markup(DASH)
    breakable = str(text(value)).replace("_", "_<wbr>")
    return Markup(f"<code>{breakable}</code>")


def number(value: Any) -> str:
    """An integer with thousands separators (None and numeric strings as integers)."""
    return f"{int(value) if value is not None else 0:,}"


def ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else DASH


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def shown(count: int, total: int) -> str:
    return f"latest {count:,} of {total:,}" if count < total else f"all {total:,}"


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else DASH


def span(data: ReportData) -> str:
    days = (data.end - data.start).total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{days * 24:g} hours"


def badge_class(value: Any) -> str:
    return str(value) if value in BADGES else ""


def delta(cur: int, prev: int, *, short: bool = False) -> Markup:
    """How a figure compares with the previous range of the same length; `short` (for table
    cells) keeps the previous figure in the tooltip."""
    if cur == prev:
        cls, sign = "same", "="
    elif prev == 0:
        cls, sign = "up", f"▲ +{cur:,}"
    else:
        change = abs(cur - prev) / prev
        cls = "up" if cur > prev else "down"
        sign = f"{'▲' if cur > prev else '▼'} {change:.0%}" if change >= 0.01 else "≈"
    if short:
        return Markup(f'<span class="delta {cls}" title="{prev:,} before">{sign}</span>')
    return Markup(f'<span class="delta {cls}">{sign}</span> vs {prev:,} before')


def vs(data: ReportData, cur: Any, prev: Any, *, short: bool = False) -> Markup:
    """`delta`, where the previous range was loaded; else that there is nothing to compare
    with (the first sync skipped that history: its events are unknown, not zero)."""
    cur, prev = int(cur or 0), int(prev or 0)
    if data.prev_loaded or data.history_start is None:
        return delta(cur, prev, short=short)
    why = f"no events loaded before {text(ts(data.history_start))}"
    if short:
        return Markup(f'<span class="delta same" title="{why}">{DASH}</span>')
    return Markup(f'<span class="muted">{why} to compare with</span>')


def badge(value: Any) -> Markup:
    return Markup(f'<span class="badge {badge_class(value)}">{text(value)}</span>')


def who(slug: Any, display: Any, kind: Any, pat: Any = None) -> Markup:
    """A subject: its slug (else display name), with display name, type and PAT below."""
    name = text(slug if slug else display)
    extra = [text(kind)] if kind else []
    if display and slug and display != slug:
        extra.insert(0, text(display))
    if pat:
        extra.append(Markup(f"PAT {text(pat)}"))
    return Markup(f'{name}<div class="small">{" · ".join(extra)}</div>') if extra else name


def what(rtype: Any, name: Any, fqn: Any) -> Markup:
    """A resource: type and name, with its fully qualified name below when that differs."""
    head = f"{text(rtype)} · {text(name)}" if name else text(rtype)
    tail = f'<div class="small mono">{text(fqn)}</div>' if fqn and fqn != name else ""
    return Markup(head + tail)


def meter(value: Any, peak: int) -> Markup:
    width = 100 * int(value or 0) / (peak or 1)
    return Markup(f'<div class="meter"><span style="width:{width:.1f}%"></span></div>')


FILTERS: Final = {
    "text": text,
    "code": code,
    "number": number,
    "ts": ts,
    "clip": clip,
    "badge_class": badge_class,
}
GLOBALS: Final = {
    "badge": badge,
    "who": who,
    "what": what,
    "meter": meter,
    "ago": ago,
    "shown": shown,
    "share": share,
    "span": span,
    "delta": delta,
    "vs": vs,
}
