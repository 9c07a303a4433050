"""`tfy-audit views`: (re)create the analysis views in the dataset."""

from __future__ import annotations

import argparse

from tfy_audit._cli.args import existing_pipeline
from tfy_audit._cli.output import EXIT_OK, Outcome


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._warehouse.views import apply_views

    created = apply_views(existing_pipeline(args))
    if not args.json:
        print(f"views: {', '.join(created) if created else 'none (destination keeps no views)'}")
    return Outcome(EXIT_OK, {"views": created})
