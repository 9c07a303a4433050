"""`tfy-audit sql`: run one read-only SQL query on the dataset."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tfy_audit._cli.args import target_from_args
from tfy_audit._cli.output import EXIT_OK, Outcome, say
from tfy_audit._core.errors import UsageError


def _sql_text(args: argparse.Namespace) -> str:
    if (args.query is None) == (args.file is None):
        raise UsageError('pass one query, as an argument (tfy-audit sql "select 1") or --file')
    if args.file is None:
        return str(args.query)
    if args.file == "-":
        return sys.stdin.read()
    try:
        return Path(args.file).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read --file {args.file} ({type(exc).__name__}); pass a UTF-8 text file"
        ) from exc


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._warehouse import sql_query

    result = sql_query.run_query(target_from_args(args), _sql_text(args), limit=args.limit)
    if not args.json:
        formats = {
            "table": sql_query.format_table,
            "csv": sql_query.format_csv,
            "json": sql_query.format_json,
        }
        print(formats[args.format](result))
    if result.truncated:
        say(
            f"tfy-audit: showing the first {len(result.rows):,} rows; --limit N shows more, "
            "--limit 0 all",
            logging.WARNING,
            event="truncated",
        )
    return Outcome(
        EXIT_OK,
        {
            "source": result.source,
            "columns": result.columns,
            "rows": [[sql_query.plain(v) for v in row] for row in result.rows],
            "row_count": len(result.rows),
            "truncated": result.truncated,
        },
    )
