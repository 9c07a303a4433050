"""`tfy-audit export --format ocsf --out DIR|s3://bucket/prefix`: OCSF Parquet in Security
Lake's custom-source layout, incrementally (`_export/`)."""

from __future__ import annotations

import argparse

from tfy_audit._cli.args import existing_pipeline
from tfy_audit._cli.output import EXIT_OK, Outcome


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._export.ocsf import export_ocsf
    from tfy_audit._export.options import EXPORT_FLAGS, options_from_text

    values = {flag.dest: getattr(args, flag.dest) for flag in EXPORT_FLAGS}
    options = options_from_text(args.out, values)  # refused before the destination is opened
    summary = export_ocsf(existing_pipeline(args, reads_only=True), options)
    by_class = {str(uid): n for uid, n in sorted(summary.events_by_class.items())}
    if not args.json:
        if summary.days:
            classes = ", ".join(f"{n:,} of class {uid}" for uid, n in by_class.items())
            print(
                f"exported {summary.events:,} OCSF events ({classes or 'none'}) of "
                f"{len(summary.days)} UTC days ({summary.days[0]} to {summary.days[-1]}) to "
                f"{summary.out}: {len(summary.files)} Parquet files, {summary.replaced} replaced"
            )
        else:
            print(f"nothing new to export to {summary.out}")
    return Outcome(
        EXIT_OK,
        {
            "out": summary.out,
            "days": summary.days,
            "events": summary.events,
            "events_by_class": by_class,
            "files": summary.files,
            "replaced": summary.replaced,
        },
    )
