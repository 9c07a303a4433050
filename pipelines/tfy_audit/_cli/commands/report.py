"""`tfy-audit report`: write a self-contained HTML dashboard."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tfy_audit._cli.args import existing_pipeline
from tfy_audit._cli.output import EXIT_OK, Outcome

if TYPE_CHECKING:
    from tfy_audit._report.options import ReportOptions


def report_options(args: argparse.Namespace, *, now: datetime | None = None) -> ReportOptions:
    """The `report` command's `ReportOptions`, from its flags (`REPORT_FLAGS`)."""
    from tfy_audit._report.options import REPORT_FLAGS, options_from_text

    values = {flag.dest: getattr(args, flag.dest) for flag in REPORT_FLAGS}
    return options_from_text(values, now=now)


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._report import write_report

    options = report_options(args)  # a bad range is refused before the destination is opened
    summary = write_report(existing_pipeline(args, reads_only=True), Path(args.out), options)
    alerts = summary.alerts
    if not args.json:
        print(
            f"wrote {summary.path}: {summary.events:,} events, {summary.subjects:,} subjects, "
            f"{summary.days} days, {summary.sensitive:,} sensitive actions"
            + (f", {alerts.total:,} alerts" if alerts else "")
        )
    return Outcome(
        EXIT_OK,
        {
            "path": str(summary.path),
            "events": summary.events,
            "subjects": summary.subjects,
            "days": summary.days,
            "sensitive": summary.sensitive,
            # null: no detection has run on this dataset (the page says how to turn it on)
            "alerts": alerts.as_dict() if alerts else None,
        },
    )
