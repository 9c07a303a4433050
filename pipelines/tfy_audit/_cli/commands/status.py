"""`tfy-audit status`: how fresh the warehouse is, as lines or `--json`; exit 3 when a filter
set is staler than `--max-lag`. The document itself is read by `_engine/status.py`."""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tfy_audit._cli.args import target_from_args
from tfy_audit._cli.output import EXIT_INCOMPLETE, EXIT_OK, Outcome
from tfy_audit._core.redact import clean
from tfy_audit._core.settings import ANOMALIES_TABLE, HISTORY_START
from tfy_audit._service.anomalies import count_text

if TYPE_CHECKING:
    from tfy_audit._engine.status import AnomalyCounts, Span, StatusDocument


def _alerts(target: Any) -> Any:
    """The alerts' totals, pending and recent ones (None: no detection has run here)."""
    from tfy_audit._detect.runner import alerts_overview
    from tfy_audit._warehouse.destination import restored_pipeline

    try:
        with restored_pipeline(target, read_only=True) as pipeline:
            return alerts_overview(pipeline)
    except Exception:  # read_status has already said what is wrong with the destination
        return None


def run(args: argparse.Namespace) -> Outcome:
    """The exit code (0, or 3 when staler than `--max-lag`) and the document, which `--json`
    prints (its `status` is `ok` or `stale`)."""
    from tfy_audit._core.timeparse import parse_duration
    from tfy_audit._engine.status import read_status, service_check
    from tfy_audit._service.client import AuditLogClient
    from tfy_audit._source.config import resolve_api_key, resolve_checked_host

    target = target_from_args(args)
    max_lag = parse_duration(args.max_lag, "max-lag") if args.max_lag else None
    client: AuditLogClient | None = None
    if args.check_service:
        host = resolve_checked_host(args.host)
        client = AuditLogClient(host, resolve_api_key(None, host))
    try:
        document = read_status(
            target, max_lag=max_lag, service=service_check(client) if client else None
        )
    finally:
        if client is not None:
            client.close()
    alerts = _alerts(target)
    # only where a detection has run: the document keeps its fields otherwise
    extra = {} if alerts is None else {"alerts": alerts}
    if not args.json:
        print(format_status(document))
        if alerts is not None:
            from tfy_audit._detect.runner import format_overview

            print(format_overview(alerts))
    if document["status"] == "stale":
        print(f"tfy-audit: stale: {staleness_line(document, args.max_lag)}", file=sys.stderr)
        return Outcome(EXIT_INCOMPLETE, {**document, **extra})
    return Outcome(EXIT_OK, {**document, **extra})


def format_lag(seconds: float) -> str:
    """`3h 05m`, `12m 30s`, `45s`, `2d 4h`."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def staleness_line(document: StatusDocument, max_lag: str) -> str:
    """One line for a monitor: which filter set is behind, by how much (a document is only
    stale under a `--max-lag`)."""
    parts = []
    limit = document["max_lag_seconds"]
    for item in document["filter_sets"]:
        lag = item["lag_seconds"]
        if lag is None:
            parts.append(f"filter set {item['filter_key']!r} has no high-water mark")
        elif limit is not None and lag > limit:
            parts.append(
                f"filter set {item['filter_key']!r} is {format_lag(lag)} behind "
                f"(mark {item['high_water_mark']}), {format_lag(lag - limit)} more than "
                f"--max-lag {max_lag}"
            )
    if not document["filter_sets"]:
        parts.append("no filter set has been synced")
    return "; ".join(parts) + "; check that the scheduled sync runs and succeeds (sync_runs)"


def format_status(document: StatusDocument) -> str:
    lines = [f"{document['destination']} dataset {document['dataset']}:"]
    if not document["filter_sets"]:
        lines.append("  no filter set synced yet")
    for item in document["filter_sets"]:
        lag = item["lag_seconds"]
        behind = f", {format_lag(lag)} behind" if lag is not None else ""
        lines.append(
            f"filter set {item['filter_key']}: high-water mark {item['high_water_mark']}{behind}"
        )
        for label, run in (
            ("last run", item["last_run"]),
            ("last successful run", item["last_successful_run"]),
        ):
            if run is None:
                lines.append(f"  {label}: none recorded")
            else:
                lines.append(
                    f"  {label}: {run['started_at']} {run['status']}, "
                    f"{run['audit_log_rows']:,} event row(s) loaded"
                )
        lines.append(f"  covered: {ranges_text(item['covered_ranges'])}")
        if item["first_sync_start"] is not None:
            first = item["first_sync_start"]
            why = (
                "the whole history"
                if datetime.fromisoformat(first) <= HISTORY_START
                else "its --since; older events are not loaded"
            )
            lines.append(f"  first sync started: {first} ({why})")
        windows = item["open_incomplete_windows"]
        lines.append(
            f"  incomplete windows still open: {len(windows)}"
            + (f" (first {windows[0]['start']} .. {windows[0]['end']})" if windows else "")
        )
        if "service" in item:
            service = item["service"]
            lines.append(
                f"  service: {service['events_after_mark']} event(s) after the mark, newest "
                f"{service['newest_event_at'] or 'unknown'}"
            )
    verify = document["last_verify"]
    if verify is None:
        lines.append("last verify: none recorded")
    else:
        lines.append(
            f"last verify: {verify['verified_at']}, {verify['range_start']} .. "
            f"{verify['range_end']}: {verify['days']} day(s), {verify['differing_days']} "
            f"differ, {verify['missing']} event(s) missing"
        )
    lines.extend(anomaly_lines(document.get("anomalies")))
    return "\n".join(lines)


def anomaly_lines(anomalies: AnomalyCounts | None) -> list[str]:
    if not anomalies or not anomalies["total"]:
        return ["anomalies: none recorded"]
    lines = [f"anomalies: {count_text(anomalies['by_kind'])} — see table {ANOMALIES_TABLE}"]
    for record in anomalies["latest"]:
        # ids and paths are the service's text: one printable line each
        lines.append(
            f"  {record['recorded_at']} {record['kind']} {record['action']}: event "
            f"{clean(str(record['event_id']), 80)} at {clean(str(record['field_path']), 120)}"
        )
    return lines


def ranges_text(ranges: list[Span], limit: int = 5) -> str:
    """`a .. b, c .. d (not read: b .. c)`: the ranges read, then the gaps between them."""
    if not ranges:
        return "nothing yet"
    shown = [f"{r['start']} .. {r['end']}" for r in ranges]
    gaps = [f"{a['end']} .. {b['start']}" for a, b in itertools.pairwise(ranges)]
    text = ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if shown[limit:] else "")
    if gaps:
        text += f" (not read: {', '.join(gaps[:limit])}"
        text += f" and {len(gaps) - limit} more)" if gaps[limit:] else ")"
    return text
