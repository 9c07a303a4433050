"""Issuing daily receipts after a sync (docs/receipts.md).

After a complete run with `--receipts-dir`, every UTC day the run completed (its end at or
before the high-water mark) that holds events gets a receipt when it has none, and a re-issue
when the run changed it: a day the run's range reached whose events now hash to another root
(late events, the lookback's corrections, a repair). A day is never re-issued for events it
lost (no sync deletes an event: that is left for `verify --receipts` to name), nor for a change
on a day the run did not read (no sync made it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tfy_audit._core.errors import TfyAuditError
from tfy_audit._core.settings import HISTORY_START
from tfy_audit._receipts.canonical import now_text
from tfy_audit._receipts.events import day_bounds, days_with_events, read_day
from tfy_audit._receipts.merkle import merkle_root
from tfy_audit._receipts.receipt import Receipt, receipt_from_json
from tfy_audit._receipts.signing import public_key_text, sign, signing_key
from tfy_audit._receipts.store import ReceiptStore
from tfy_audit._receipts.table import ensure_table, insert_receipt, read_receipts

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)

# The service's count of each of some days; None where it was not asked.
ServiceCounts = Callable[[Sequence[date]], dict[date, int]]


@dataclass
class IssuedReceipts:
    """What one issue did: the receipts written, the days whose change was refused, and the
    public key the receipts are signed with (None: unsigned)."""

    location: str
    issued: list[Receipt] = field(default_factory=list)
    refused: list[date] = field(default_factory=list)
    public_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "issued": [
                {"day": r.day.isoformat(), "seq": r.seq, "count": r.count, "hash": r.hash}
                for r in self.issued
            ],
            "refused_days": [d.isoformat() for d in self.refused],
            "public_key": self.public_key,
        }


def receipt_sql_client(pipeline: dlt.Pipeline) -> Any:
    """The destination's SQL client; a UsageError where receipts cannot be kept."""
    from tfy_audit._compat.dlt import persistent_sql_client_or_refuse

    return persistent_sql_client_or_refuse(
        pipeline,
        "receipts are kept for DuckDB and PostgreSQL destinations (they are read back by "
        "SQL); drop --receipts-dir for this destination",
    )


def issue_receipts(
    pipeline: dlt.Pipeline,
    location: str,
    run_start: datetime,
    run_end: datetime,
    covered_until: datetime | None,
    *,
    service_counts: ServiceCounts | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IssuedReceipts:
    """Issue the receipts a run owes (module docstring) into `location` and `daily_receipts`."""
    key = signing_key()
    store = ReceiptStore(location)
    out = IssuedReceipts(store.shown, public_key=public_key_text(key) if key else None)
    if covered_until is None:
        return out
    complete_end = datetime.combine(covered_until.astimezone(UTC).date(), datetime.min.time(), UTC)
    with receipt_sql_client(pipeline) as client:
        table = ensure_table(client)
        chain = [r for _, r in read_receipts(client)]
        chain.extend(_catch_up(client, table, store, chain))
        latest: dict[date, Receipt] = {}
        for r in chain:
            if r.day not in latest or r.seq > latest[r.day].seq:
                latest[r.day] = r
        tail = max(chain, key=lambda r: r.index, default=None)
        if latest:
            after_last = datetime.combine(max(latest) + DAY, datetime.min.time(), UTC)
            begin = min(_day_start(run_start), after_last)
        else:
            begin = HISTORY_START
        days = set(days_with_events(client, begin, complete_end))
        days.update(d for d in latest if begin <= _day_start_of(d) < complete_end)
        pending: list[tuple[date, list[tuple[str, str]], Receipt | None]] = []
        for day in sorted(days):
            found = read_day(client, day, leaves=False)
            old = latest.get(day)
            if old is not None:
                if old.merkle_root == merkle_root(found.hashes):
                    continue
                if not _may_reissue(_attested(store, old), found.events, day, run_start, run_end):
                    out.refused.append(day)
                    continue
            pending.append((day, found.events, old))
        counts = service_counts([d for d, _, _ in pending]) if service_counts and pending else {}
        for day, events, old in pending:
            receipt = Receipt(
                dataset=pipeline.dataset_name,
                index=0 if tail is None else tail.index + 1,
                day=day,
                seq=0 if old is None else old.seq + 1,
                count=len(events),
                merkle_root=merkle_root(h for _, h in events),
                service_count=counts.get(day),
                prev=None if tail is None else tail.hash,
                supersedes=None if old is None else old.hash,
                issued_at=now_text(now()),
                public_key=out.public_key,
                events=tuple(events),
            )
            if key is not None:
                receipt = receipt.signed(sign(key, receipt.header_bytes()))
            # the file first: a kill before the row is caught up by the next issue
            store.write(receipt)
            insert_receipt(client, table, receipt)
            out.issued.append(receipt)
            tail = receipt
    if out.refused:
        logger.warning(
            "not re-issuing the receipts of %d day(s) that lost events or changed outside "
            "this run's range (%s); run `tfy-audit verify --receipts` to see what changed",
            len(out.refused),
            ", ".join(d.isoformat() for d in out.refused[:10]),
        )
    return out


def _attested(store: ReceiptStore, receipt: Receipt) -> Receipt | None:
    """`receipt` with the event list its file holds (`daily_receipts` rows carry none); None
    when the file cannot be read or is not that receipt (edited, replaced), so nothing can
    show what the day held."""
    try:
        held = receipt_from_json(store.read(receipt.file_name))
    except (ValueError, TfyAuditError):
        return None
    return held if held.hash == receipt.hash else None


def _may_reissue(
    old: Receipt | None,
    events: list[tuple[str, str]],
    day: date,
    run_start: datetime,
    run_end: datetime,
) -> bool:
    """A day changed since its receipt may be re-issued only if this run read part of it and
    it lost no event (a sync adds and corrects events, it never deletes one); `old` is the
    day's receipt as its file holds it, None where that cannot be read (then never)."""
    if old is None:
        return False
    start, end = day_bounds(day)
    if end <= run_start or start >= run_end:
        return False
    return {i for i, _ in old.events} <= {i for i, _ in events}


def _catch_up(client: Any, table: str, store: ReceiptStore, chain: list[Receipt]) -> list[Receipt]:
    """Receipt files a killed issue wrote without their row, added to the table in order."""
    known = {r.file_name for r in chain}
    tail = max((r.index for r in chain), default=-1)
    extra: list[Receipt] = []
    for name in store.names():
        if name in known:
            continue
        try:
            receipt = receipt_from_json(store.read(name))
        except ValueError:
            continue  # verify names it; the chain goes on from the rows
        if receipt.file_name == name and receipt.index > tail:
            extra.append(receipt)
    extra.sort(key=lambda r: r.index)
    caught: list[Receipt] = []
    for receipt in extra:
        if receipt.index != tail + 1:
            break
        insert_receipt(client, table, receipt)
        caught.append(receipt)
        tail = receipt.index
    return caught


def _day_start(at: datetime) -> datetime:
    return _day_start_of(at.astimezone(UTC).date())


def _day_start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def service_counter(pipeline: dlt.Pipeline, client: Any, *, concurrency: int) -> ServiceCounts:
    """The service's count of whole UTC days, as `verify` counts them: its reading of `start`
    and `end` learnt first from the warehouse's events, so each day is `[start, end)`."""
    from tfy_audit._engine.verify import (
        day_buckets,
        read_bounds,
        service_day_counts,
        sorted_micros,
    )
    from tfy_audit._service.client import AuditLogFilters
    from tfy_audit._warehouse.readback import read_warehouse_events

    def counts(days: Sequence[date]) -> dict[date, int]:
        if not days:
            return {}
        wanted = set(days)
        start, end = _day_start_of(min(days)), _day_start_of(max(days)) + DAY
        filters = AuditLogFilters()
        micros = sorted_micros(read_warehouse_events(pipeline, start, end)["created_at"])
        bounds = read_bounds(client, filters, micros)
        # every day of the span: its spans are split on contiguous days
        found = service_day_counts(
            client, filters, day_buckets(start, end), concurrency=concurrency, bounds=bounds
        )
        return {d: found.get(d, 0) for d in wanted}

    return counts
