"""`tfy-audit verify`: compare the service's counts (or ids) per UTC day with the warehouse."""

from __future__ import annotations

import argparse
from typing import Any

from tfy_audit._cli.args import require_database, sync_options_from_args
from tfy_audit._cli.output import EXIT_INCOMPLETE, EXIT_OK, Outcome, say
from tfy_audit._core.errors import UsageError

# event ids a finding's line names; --json lists every one
RECEIPT_IDS_SHOWN = 5


def _receipts(args: argparse.Namespace, options: Any) -> Outcome:
    """`verify --receipts`: the warehouse against its daily receipts, offline."""
    from tfy_audit._cli.args import existing_pipeline
    from tfy_audit._core.redact import clean
    from tfy_audit._engine.verify_receipts import verify_receipts

    if args.ids or args.repair:
        raise UsageError("--receipts checks offline; run --ids or --repair on their own")
    if options.receipts_dir is None:
        raise UsageError(
            "verify --receipts needs --receipts-dir, the folder or bucket sync wrote them to"
        )
    pipeline = existing_pipeline(args, reads_only=True)
    result = verify_receipts(pipeline, options.receipts_dir)
    if not args.json:
        key = (
            f"signatures checked with {result.key} (from {result.key_from})"
            if result.key
            else "unsigned (no key given, none in the receipts)"
        )
        print(
            f"receipts in {result.location}: {result.receipts} receipt(s), {result.days} "
            f"day(s), {result.events:,} event(s) hashed again from the warehouse; {key}"
        )
        for f in result.findings:
            day = f"{f.day.isoformat()}: " if f.day else ""
            ids = ""
            if f.ids:
                shown = ", ".join(clean(i, 120) for i in f.ids[:RECEIPT_IDS_SHOWN])
                more = len(f.ids) - RECEIPT_IDS_SHOWN
                ids = f": {shown}" + (f" and {more} more (--json lists them)" if more > 0 else "")
            print(f"  {day}{f.text}{ids}")
    if not result.failing:
        return Outcome(EXIT_OK, {"receipts": result.as_dict()})
    days = sorted({f.day for f in result.findings if f.day})
    where = f" on {len(days)} day(s)" if days else ""
    say(
        f"tfy-audit: the warehouse or its receipts changed: {len(result.findings)} finding(s)"
        f"{where}; restore the rows or files from a backup (a re-sync of a day, `tfy-audit "
        "sync --start DAY --end NEXT_DAY`, loads its deleted events again)",
        event="differ",
    )
    return Outcome(EXIT_INCOMPLETE, {"receipts": result.as_dict()})


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._engine.verify import run_verify, summarize_days

    require_database(args)
    options = sync_options_from_args(args)
    if args.receipts:
        return _receipts(args, options)
    if options.receipts_dir is not None:
        raise UsageError("--receipts-dir is read by verify --receipts; add --receipts")
    outcome = run_verify(options, repair=args.repair, ids=args.ids)
    final: Any = outcome.final  # a VerifyResult, or an IdsResult with --ids
    text = _ids_text if args.ids else _verify_text
    if not args.json:
        if outcome.first_day is not None:
            print(outcome.first_day.text)
        print(text(outcome.first, "before repair" if outcome.repaired_days else ""))
        if outcome.after_repair is not None:
            days = summarize_days(outcome.repaired_days)
            print(f"re-synced {len(outcome.repaired_days)} day(s): {days}")
            print(text(outcome.after_repair, "after repair"))
    code = EXIT_OK
    if final.failing:
        days = summarize_days([d.day for d in final.failing])
        if args.ids:
            again = "--ids --repair"
            what = f"{final.missing_events:,} event(s) missing in the warehouse"
            unread = sum(1 for d in final.failing if not d.complete)
            if unread:
                what += f", {unread} day(s) not read completely"
            lead = f"{len(final.failing)} day(s) differ by id ({what})"
        else:
            again, lead = "--repair", f"{len(final.failing)} day(s) differ"
        hint = "" if args.repair else f"; run `tfy-audit verify {again}` to re-sync them"
        set_aside = getattr(final, "set_aside", {})
        if hint and any(set_aside.get(d.day) for d in final.failing):
            # re-read at the same cap, an event set aside is set aside again
            hint += " (with a --max-response-mb above the one the events set aside exceeded)"
        say(f"tfy-audit: {lead}: {days}{hint}", event="differ")
        code = EXIT_INCOMPLETE
    return Outcome(code, _verify_json(outcome))


def _summarized(items: list[str]) -> str:
    from tfy_audit._engine.verify_ids import summarize

    return summarize(items)


def _ids_text(result: Any, label: str) -> str:
    """`verify --ids`: a head line, a row per differing day, and one line per kind of id."""
    differing, failing = result.differing, result.failing
    head = (
        f"verified ids {result.start.isoformat()} .. {result.end.isoformat()}"
        + (f" ({label})" if label else "")
        + f": {len(result.days)} day(s) with events, {len(result.days) - len(differing)} match, "
        f"{len(failing)} lack events, {len(differing) - len(failing)} differ only by events "
        "gone from the service or ids held on another day "
        f"({result.requests} requests, {result.pages} of them pages)"
    )
    if not differing:
        return head
    lines = [head, f"  {'day':<10}  {'service':>9}  {'warehouse':>9}  {'missing':>8}  {'gone':>6}"]
    for d in differing[:VERIFY_TABLE_ROWS]:
        lines.append(
            f"  {d.day.isoformat():<10}  {d.service:>9,}  {d.warehouse:>9,}  "
            f"{len(d.missing):>8,}  {len(d.gone_from_service):>6,}"
            + ("" if d.complete else "  not read completely")
        )
    if len(differing) > VERIFY_TABLE_ROWS:
        more = len(differing) - VERIFY_TABLE_ROWS
        lines.append(f"  ... and {more} more day(s) (--json lists them all)")
    for kind, attr in (
        ("missing in the warehouse", "missing"),
        ("gone from the service and kept in the warehouse", "gone_from_service"),
    ):
        pairs = [f"{d.day.isoformat()} {i}" for d in differing for i in getattr(d, attr)]
        if pairs:
            days = sum(1 for d in differing if getattr(d, attr))
            lines.append(
                f"{len(pairs):,} event(s) on {days} day(s) are {kind}: {_summarized(pairs)}"
            )
    shared = [
        f"{d.day.isoformat()} {i} (held {on.isoformat()})"
        for d in differing
        for i, on in d.elsewhere
    ]
    if shared:
        lines.append(
            f"{len(shared):,} event(s) share an id the warehouse holds on another day, one row "
            f"per id: {_summarized(shared)}"
        )
    return "\n".join(lines)


def _verify_text(result: Any, label: str) -> str:
    differing = result.differing
    head = (
        f"verified {result.start.isoformat()} .. {result.end.isoformat()}"
        + (f" ({label})" if label else "")
        + f": {len(result.days)} day(s) with events, {len(result.days) - len(differing)} match, "
        f"{len(differing)} differ ({result.requests} requests); {_bounds_text(result.bounds)}"
    )
    repeated = getattr(result, "repeated_ids", [])
    if repeated:
        from tfy_audit._core.redact import clean

        head += "\n  ids the service serves twice (recorded in event_anomalies, loaded once): "
        head += ", ".join(clean(i) for i in repeated)
    if not differing:
        return head
    lines = [head, f"  {'day':<10}  {'service':>9}  {'warehouse':>9}  {'missing':>8}"]
    for d in differing[:VERIFY_TABLE_ROWS]:
        lines.append(
            f"  {d.day.isoformat():<10}  {d.service:>9,}  {d.warehouse:>9,}  {d.missing:>8,}"
        )
    if len(differing) > VERIFY_TABLE_ROWS:
        more = len(differing) - VERIFY_TABLE_ROWS
        lines.append(f"  ... and {more} more day(s) (--json lists them all)")
    set_aside = getattr(result, "set_aside", {})
    for d in differing[:VERIFY_TABLE_ROWS]:
        if set_aside.get(d.day):
            n = set_aside[d.day]
            lines.append(
                f"  {d.day.isoformat()}: {n:,} event{'s' if n != 1 else ''} set aside as too "
                "large (event_anomalies)"
            )
    return "\n".join(lines)


# the differing days verify prints as a table; --json lists every one
VERIFY_TABLE_ROWS = 20


def _bounds_text(bounds: Any) -> str:
    """How the service reads its bounds, as verify learnt it."""

    def side(inclusive: bool | None) -> str:
        return "unknown" if inclusive is None else "inclusive" if inclusive else "exclusive"

    return (
        f"the service's start is {side(bounds.start_inclusive)}, "
        f"its end {side(bounds.end_inclusive)}"
    )


def _verify_json(outcome: Any) -> dict[str, Any]:
    def result(r: Any) -> dict[str, Any]:
        return {
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "days": len(r.days),
            "requests": r.requests,
            # how the service reads start/end (null: unknown); `warehouse` below counts the
            # warehouse's events on a day's padded bounds the same way
            "service_bounds": {
                "start_inclusive": r.bounds.start_inclusive,
                "end_inclusive": r.bounds.end_inclusive,
            },
            "differing": [
                {"day": d.day.isoformat(), "service": d.service, "warehouse": d.warehouse}
                # events set aside as too large (event_anomalies) on the day, when any
                | (
                    {"set_aside_too_large": n}
                    if (n := getattr(r, "set_aside", {}).get(d.day))
                    else {}
                )
                for d in r.differing
            ],
            # ids a sync recorded as served twice by the service (event_anomalies)
            "repeated_ids": getattr(r, "repeated_ids", []),
        }

    begin = outcome.first_day
    if hasattr(outcome.first, "undated"):  # verify --ids
        return {
            "first_day": begin and _first_day_json(begin),
            "ids": _ids_json(outcome.first),
            "repaired_days": [d.isoformat() for d in outcome.repaired_days],
            "ids_after_repair": _ids_json(outcome.after_repair) if outcome.after_repair else None,
        }
    return {
        "first_day": begin and _first_day_json(begin),
        "result": result(outcome.first),
        "repaired_days": [d.isoformat() for d in outcome.repaired_days],
        "after_repair": result(outcome.after_repair) if outcome.after_repair else None,
    }


def _first_day_json(begin: Any) -> dict[str, Any]:
    return {
        "day": begin.start.date().isoformat(),
        "start": begin.start.isoformat(),
        "why": begin.why,
    }


def _ids_json(r: Any) -> dict[str, Any]:
    """`verify --ids --json`: every differing day with every id (the text shows a few)."""
    return {
        "start": r.start.isoformat(),
        "end": r.end.isoformat(),
        "days": len(r.days),
        "requests": r.requests,
        "pages": r.pages,
        "missing": r.missing,
        "gone_from_service": r.gone_from_service,
        "undated": r.undated,
        "differing": [
            {
                "day": d.day.isoformat(),
                "service": d.service,
                "warehouse": d.warehouse,
                "missing": d.missing,
                "gone_from_service": d.gone_from_service,
                "held_on_another_day": [
                    {"id": i, "warehouse_day": on.isoformat()} for i, on in d.elsewhere
                ],
            }
            | ({} if d.complete else {"complete": False})
            for d in r.differing
        ],
    }
