"""The page, rendered from the Jinja2 templates in `templates/`.

The environment escapes every `{{ value }}` (autoescape) and refuses an undefined name
(`StrictUndefined`), so a misspelt field fails the render instead of printing nothing. Values
that are already HTML (a chart, a badge) are `Markup` from `charts.py` and `filters.py`.

Templates are compacted as they load: each line loses its indentation and line break, so they
can be laid out for reading while the page stays one line per document, as it always was.
A space between two words therefore stays on one line, or is written `{{ " " }}`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any, Final

import jinja2
from markupsafe import Markup

from tfy_audit._core.settings import ANOMALIES_TABLE
from tfy_audit._report import charts
from tfy_audit._report.data import DORMANT_AFTER, GROUP_LIMIT, TOP_SUBJECTS, ReportData, Row
from tfy_audit._report.filters import FILTERS, GLOBALS
from tfy_audit._service.anomalies import count_text
from tfy_audit._warehouse.severity import TIERS

_PACKAGE: Final = "tfy_audit._report"
# The latest critical and high changes listed above the groups of access changes.
ACCESS_HIGHLIGHTS: Final = 12

TIER_NOTES: Final = {
    "critical": "tenant, account, cluster, secret-group, role and identity-provider deletions;"
    " admin grants",
    "high": "secret deletions, tokens created, role and policy changes, accounts and identities",
    "notable": "every other action on secrets, tokens, access, identities; other deletions",
}
CHANGE_TITLES: Final = {"grant": "Grants", "change": "Changes", "revoke": "Revocations"}
KIND_TITLES: Final = {
    "external identity": "External identities",
    "virtual account": "Virtual accounts",
    "service account": "Service accounts",
    "agent identity": "Agent identities",
}


class _CompactLoader(jinja2.PackageLoader):
    """`PackageLoader` that joins each template's lines without their indentation."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool] | None]:
        source, filename, uptodate = super().get_source(environment, template)
        return "".join(line.strip() for line in source.splitlines()), filename, uptodate


def _peak_of(rows: Sequence[Row], index: int) -> int:
    return max((int(row[index] or 0) for row in rows), default=0)


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _top_actions(data: ReportData) -> list[tuple[str, int]]:
    return [(a if a is not None else "(no action)", n) for a, n in data.top_actions]


def _urgent_access(data: ReportData) -> list[Row]:
    return [r for r in data.access_rows if r[2] in ("critical", "high")][:ACCESS_HIGHLIGHTS]


def _access_of(data: ReportData, change: str) -> list[Row]:
    return [r for r in data.access_rows if r[1] == change][:GROUP_LIMIT]


def _external_of(data: ReportData, kind: str) -> list[Row]:
    return [r for r in data.external if r[0] == kind]


def _tokens_of(data: ReportData, kind: str) -> list[Row]:
    return [r for r in data.tokens if r[2] == kind]


def _days_idle(end: datetime, last: Any) -> int:
    return (end - last).days if isinstance(last, datetime) else 0


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_CompactLoader(_PACKAGE, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    env.globals.update(
        daily_chart=charts.daily_chart,
        hbar_chart=charts.hbar_chart,
        heatmap=charts.heatmap,
        peak_of=_peak_of,
        by_count=_by_count,
        top_actions=_top_actions,
        urgent_access=_urgent_access,
        access_of=_access_of,
        external_of=_external_of,
        tokens_of=_tokens_of,
        days_idle=_days_idle,
        is_datetime=lambda value: isinstance(value, datetime),
        count_text=count_text,
        tiers=TIERS,
        tier_notes=TIER_NOTES,
        change_titles=CHANGE_TITLES,
        kind_titles=KIND_TITLES,
        dormant_after=DORMANT_AFTER,
        top_subjects=TOP_SUBJECTS,
        anomalies_table=ANOMALIES_TABLE,
    )
    return env


@functools.cache
def _css() -> Markup:
    text = resources.files(_PACKAGE).joinpath("templates/report.css").read_text(encoding="utf-8")
    return Markup(text)


def render_html(data: ReportData) -> str:
    """The whole page as one string."""
    template = _environment().get_template("report.html.j2")
    return template.render(data=data, cur=data.cur, prev=data.prev, p=data.params, css=_css())
