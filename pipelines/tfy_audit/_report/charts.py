"""The report's charts, drawn as inline SVG: no script and nothing loaded, so they show offline
and in print. Every label from the data is escaped here; the result is marked safe for the
templates.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Final

from markupsafe import Markup

from tfy_audit._report.filters import clip

# A chart with more bars than this is unreadable: days are grouped into weeks, then months.
_MAX_BARS: Final = 180
# Longer labels of the bar chart are cut (the full name is in the tooltip).
_LABEL_CHARS: Final = 44


def _nice_step(span: float) -> int:
    """A round step (1, 2, 5 x 10^k) that divides `span` into about four intervals."""
    raw = max(span / 4, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)


def _buckets(daily: Sequence[tuple[date, int, int]]) -> tuple[str, list[tuple[date, int, int]]]:
    """Daily counts with empty days filled in, grouped into weeks or months when too many."""
    if not daily:
        return "day", []
    counts = {day: (n, s) for day, n, s in daily}
    first, last = daily[0][0], daily[-1][0]

    def key_day(d: date) -> date:
        return d

    def key_week(d: date) -> date:
        return d - timedelta(days=d.weekday())

    def key_month(d: date) -> date:
        return d.replace(day=1)

    for unit, key in (("day", key_day), ("week", key_week), ("month", key_month)):
        grouped: dict[date, list[int]] = {}
        day = first
        while day <= last:
            total, flagged = counts.get(day, (0, 0))
            slot = grouped.setdefault(key(day), [0, 0])
            slot[0] += total
            slot[1] += flagged
            day += timedelta(days=1)
        if len(grouped) <= _MAX_BARS or unit == "month":
            return unit, [(k, v[0], v[1]) for k, v in sorted(grouped.items())]
    raise AssertionError("unreachable")


def daily_chart(daily: Sequence[tuple[date, int, int]]) -> tuple[str, Markup]:
    """SVG bars of events per bucket, sensitive events overlaid; returns (unit, svg)."""
    unit, series = _buckets(daily)
    if not series:
        return unit, Markup('<p class="empty">No events loaded yet.</p>')
    width, height = 960, 260
    left, right, top, bottom = 56, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(total for _, total, _ in series)
    step = _nice_step(peak)
    ceiling = max(step, math.ceil(peak / step) * step)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Events per {unit}">'
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>'
        )
    slot = plot_w / len(series)
    bar = max(min(slot * 0.78, 48.0), 1.0)
    for i, (start, total, flagged) in enumerate(series):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * total / ceiling
        hs = plot_h * flagged / ceiling
        label = f"{unit} of {start.isoformat()}" if unit != "day" else start.isoformat()
        tip = html.escape(f"{label}: {total:,} events, {flagged:,} sensitive")
        parts.append(
            f'<g><title>{tip}</title><rect class="bar" x="{x:.2f}" y="{top + plot_h - h:.2f}" '
            f'width="{bar:.2f}" height="{h:.2f}" rx="{min(2.0, bar / 4):.2f}"/>'
        )
        if flagged:
            parts.append(
                f'<rect class="bar-sensitive" x="{x:.2f}" y="{top + plot_h - hs:.2f}" '
                f'width="{bar:.2f}" height="{hs:.2f}"/>'
            )
        parts.append("</g>")
    labels = min(len(series), 8)
    for j in range(labels):
        i = round(j * (len(series) - 1) / max(labels - 1, 1))
        # keep the ~70px wide date inside the plot rather than clipped at its edges
        x = min(max(left + i * slot + slot / 2, left + 36), width - right - 36)
        start = series[i][0]
        text = start.strftime("%Y-%m") if unit == "month" else start.isoformat()
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/></svg>'
    )
    return unit, Markup("".join(parts))


def hbar_chart(items: Sequence[tuple[str, int]], *, label: str) -> Markup:
    """Horizontal SVG bars, one per (name, count), longest first as given."""
    if not items:
        return Markup('<p class="empty">Nothing to show.</p>')
    width, row, value_w = 640, 26, 64
    # labels are monospace, so their width is known: 0.6em per character at 11px
    longest = max(len(clip(name, _LABEL_CHARS)) for name, _ in items)
    label_w = max(120, round(longest * 6.6) + 14)
    height = row * len(items) + 4
    peak = max(n for _, n in items) or 1
    track = width - label_w - value_w
    parts = [
        f'<svg class="chart hbar" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(label)}">'
    ]
    for i, (name, count) in enumerate(items):
        y = i * row + 2
        w = max(track * count / peak, 2.0)
        parts.append(
            f"<g><title>{html.escape(name)}: {count:,}</title>"
            f'<text class="label" x="{label_w - 10}" y="{y + row / 2 + 4:.1f}" '
            f'text-anchor="end">{html.escape(clip(name, _LABEL_CHARS))}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w:.2f}" height="{row - 8}" '
            'rx="3"/>'
            f'<text class="value" x="{label_w + w + 6:.2f}" y="{y + row / 2 + 4:.1f}">'
            f"{count:,}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def heatmap(heat: Mapping[tuple[int, int], int], work_start: int, work_end: int) -> Markup:
    """Events per (ISO day of the week, local hour) as a grid of cells, working hours blue
    and outlined, off-hours red; the shade grows with the count."""
    peak = max(heat.values(), default=0) or 1
    cells = ['<div class="h"></div>'] + [
        f'<div class="h">{h if h % 3 == 0 else ""}</div>' for h in range(24)
    ]
    for dow, name in enumerate(_DAYS, start=1):
        cells.append(f'<div class="d">{name}</div>')
        for hour in range(24):
            n = heat.get((dow, hour), 0)
            work = dow <= 5 and work_start <= hour < work_end
            alpha = 0.06 + 0.94 * (n / peak) ** 0.6 if n else 0.0
            color = "59,130,246" if work else "225,29,72"
            cls = ' class="work"' if work else ""
            cells.append(
                f'<div{cls} title="{name} {hour:02d}:00 {n:,} events" '
                f'style="background:rgba({color},{alpha:.2f})"></div>'
            )
    return Markup(f'<div class="heat">{"".join(cells)}</div>')
