"""`tfy-audit verify --receipts`: the warehouse against its daily receipts, offline.

Reads the receipt files (the evidence) and `daily_receipts` (the warehouse's copy), and for
each receipt checks, without the service:
- the file: its header hashes to the hash it states, its event list to its Merkle root and
  count (an edited file);
- the chain: indexes 0..n-1, each `prev` the hash of the one before, each re-issue's
  `supersedes` the day's previous receipt (a file deleted or replaced);
- the signature, with the pinned key (TFY_AUDIT_RECEIPT_PUBLIC_KEY), else the signing key's,
  else the first receipt's;
- the table: one row per file, the same receipt (a row or a file alone);
- the warehouse: each day's events hashed again from the rows, against the day's latest receipt
  (events deleted, added, or changed, by id), and every metaData leaf against its event's
  `meta_data` (a leaf changed); days with events and no receipt between the first and the last
  receipted day (events added on a day whose receipt was removed with its file).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from tfy_audit._core.errors import UsageError
from tfy_audit._engine.receipts import receipt_sql_client
from tfy_audit._receipts.events import day_bounds, days_with_events, read_day
from tfy_audit._receipts.merkle import merkle_root
from tfy_audit._receipts.receipt import Receipt, receipt_from_json
from tfy_audit._receipts.signing import (
    pinned_public_key,
    public_key_text,
    signature_valid,
    signing_key,
)
from tfy_audit._receipts.store import ReceiptStore
from tfy_audit._receipts.table import read_receipts

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

# What a finding is about; the CLI words each.
EVENTS_DELETED: Final = "events_deleted"
EVENTS_ADDED: Final = "events_added"
EVENTS_CHANGED: Final = "events_changed"
EVENTS_REPEATED: Final = "events_repeated"
LEAVES_CHANGED: Final = "metadata_leaves_changed"
DAY_UNRECEIPTED: Final = "day_without_receipt"
RECEIPT_EDITED: Final = "receipt_edited"
RECEIPT_UNREADABLE: Final = "receipt_unreadable"
RECEIPT_MISSING: Final = "receipt_missing"
CHAIN_BROKEN: Final = "chain_broken"
SIGNATURE_INVALID: Final = "signature_invalid"
TABLE_DIFFERS: Final = "table_differs"


@dataclass(frozen=True)
class Finding:
    kind: str
    day: date | None
    text: str  # what is wrong, one clause
    ids: tuple[str, ...] = ()  # the event ids (or leaf `id path`s) it concerns

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "day": self.day.isoformat() if self.day else None,
            "text": self.text,
            "ids": list(self.ids),
        }


@dataclass
class ReceiptsResult:
    location: str
    receipts: int = 0
    days: int = 0
    events: int = 0
    signed: int = 0
    key: str | None = None
    key_from: str = ""
    findings: list[Finding] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return bool(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "receipts": self.receipts,
            "days": self.days,
            "events": self.events,
            "signed": self.signed,
            "public_key": self.key,
            "public_key_from": self.key_from,
            "findings": [f.as_dict() for f in self.findings],
        }


def verify_receipts(pipeline: dlt.Pipeline, location: str) -> ReceiptsResult:
    store = ReceiptStore(location)
    result = ReceiptsResult(store.shown)
    names = store.names()
    if not names:
        raise UsageError(
            f"no receipts in {store.shown}; pass the --receipts-dir `tfy-audit sync "
            "--receipts-dir` wrote"
        )
    files: dict[str, Receipt] = {}
    for name in names:
        try:
            receipt = receipt_from_json(store.read(name))
        except ValueError as exc:
            result.findings.append(
                Finding(RECEIPT_UNREADABLE, _day_of(name), f"receipt {name} is unreadable: {exc}")
            )
            continue
        files[name] = receipt
        _check_file(receipt, name, store.read(name), pipeline.dataset_name, result)
    chain = sorted(files.values(), key=lambda r: (r.index, r.hash))
    result.receipts = len(chain)
    _check_chain(chain, result)
    _check_signatures(chain, result)
    with receipt_sql_client(pipeline) as client:
        _check_table(chain, read_receipts(client), result)
        _check_warehouse(client, chain, result)
    return result


def _day_of(name: str) -> date | None:
    try:
        return date.fromisoformat(name[:10])
    except ValueError:
        return None


def _check_file(receipt: Receipt, name: str, raw: Any, dataset: str, out: ReceiptsResult) -> None:
    day = receipt.day
    if name != receipt.file_name:
        out.findings.append(
            Finding(RECEIPT_EDITED, day, f"receipt {name} says it is {receipt.file_name}")
        )
    if raw.get("hash") != receipt.hash:
        out.findings.append(
            Finding(
                RECEIPT_EDITED,
                day,
                f"receipt {name} was edited: its header no longer hashes to the hash it states",
            )
        )
    hashes = [h for _, h in receipt.events]
    if merkle_root(hashes) != receipt.merkle_root or len(hashes) != receipt.count:
        out.findings.append(
            Finding(
                RECEIPT_EDITED,
                day,
                f"receipt {name} was edited: its event list does not "
                "make its Merkle root and count",
            )
        )
    if receipt.dataset != dataset:
        out.findings.append(
            Finding(
                RECEIPT_EDITED,
                day,
                f"receipt {name} is of dataset {receipt.dataset!r}, not {dataset!r}",
            )
        )


def _check_chain(chain: list[Receipt], out: ReceiptsResult) -> None:
    by_index = {r.index: r for r in chain}
    last = max(by_index, default=-1)
    missing = [i for i in range(last + 1) if i not in by_index]
    for i in missing:
        after = by_index.get(i + 1)
        before = by_index.get(i - 1)
        where = (
            f"between {before.file_name} and {after.file_name}"
            if before and after
            else f"before {after.file_name}"
            if after
            else "at the chain's end"
        )
        out.findings.append(
            Finding(RECEIPT_MISSING, None, f"receipt #{i} of the chain is missing ({where})")
        )
    by_hash = {r.hash: r for r in chain}
    days: dict[date, list[Receipt]] = {}
    for r in chain:
        days.setdefault(r.day, []).append(r)
        before = by_index.get(r.index - 1)
        if r.index == 0 and r.prev is not None:
            out.findings.append(
                Finding(CHAIN_BROKEN, r.day, f"receipt {r.file_name} is first yet points back")
            )
        elif before is not None and r.prev != before.hash:
            out.findings.append(
                Finding(
                    CHAIN_BROKEN,
                    r.day,
                    f"receipt {r.file_name} does not point at "
                    f"{before.file_name}, the receipt before it (one of them was replaced)",
                )
            )
        if r.supersedes is not None and r.supersedes not in by_hash:
            out.findings.append(
                Finding(
                    RECEIPT_MISSING,
                    r.day,
                    f"receipt {r.file_name} re-issues a receipt that is missing",
                )
            )
        elif r.supersedes is not None:
            # a re-issue adds late events and corrections, never drops one: an id the replaced
            # receipt attested and this one lacks was deleted before the day was re-issued
            replaced = by_hash[r.supersedes]
            dropped = sorted({i for i, _ in replaced.events} - {i for i, _ in r.events})
            if dropped:
                out.findings.append(
                    Finding(
                        EVENTS_DELETED,
                        r.day,
                        f"{len(dropped)} event(s) that {replaced.file_name} attested are "
                        f"missing from its re-issue {r.file_name}",
                        tuple(dropped),
                    )
                )
    for day, receipts in days.items():
        seqs = sorted(r.seq for r in receipts)
        if seqs != list(range(len(seqs))):
            out.findings.append(
                Finding(
                    RECEIPT_MISSING,
                    day,
                    f"the receipts of {day.isoformat()} are re-issues "
                    f"{seqs}, not 0..{len(seqs) - 1}",
                )
            )


def _check_signatures(chain: list[Receipt], out: ReceiptsResult) -> None:
    pinned = pinned_public_key()
    own = signing_key()
    if pinned is not None:
        out.key, out.key_from = pinned, "TFY_AUDIT_RECEIPT_PUBLIC_KEY"
    elif own is not None:
        out.key, out.key_from = public_key_text(own), "TFY_AUDIT_RECEIPT_KEY"
    else:
        first = next((r for r in chain if r.public_key), None)
        if first is not None:
            out.key, out.key_from = first.public_key, f"receipt {first.file_name}"
    for r in chain:
        if r.signature is None and r.public_key is None and out.key is None:
            continue  # an unsigned chain, and no key asked for
        if r.public_key != out.key:
            why = "is not signed" if r.public_key is None else "names another key"
            out.findings.append(Finding(SIGNATURE_INVALID, r.day, f"receipt {r.file_name} {why}"))
            continue
        if (
            r.signature is None
            or r.public_key is None
            or not signature_valid(r.public_key, r.header_bytes(), r.signature)
        ):
            out.findings.append(
                Finding(
                    SIGNATURE_INVALID,
                    r.day,
                    f"receipt {r.file_name}'s signature does not "
                    "verify (the receipt or its signature was changed)",
                )
            )
            continue
        out.signed += 1


def _check_table(
    chain: list[Receipt], rows: list[tuple[str, Receipt]], out: ReceiptsResult
) -> None:
    in_files = {r.hash: r for r in chain}
    in_table: dict[str, Receipt] = {}
    for stated, row in rows:
        in_table[stated] = row
        if stated != row.hash:
            out.findings.append(
                Finding(
                    TABLE_DIFFERS,
                    row.day,
                    f"daily_receipts' row for {row.file_name} was "
                    "edited: it no longer hashes to its receipt_hash",
                )
            )
        elif stated not in in_files:
            out.findings.append(
                Finding(
                    TABLE_DIFFERS,
                    row.day,
                    f"daily_receipts lists {row.file_name} "
                    f"({stated[:12]}), which no receipt file holds",
                )
            )
    for r in chain:
        if r.hash not in in_table:
            out.findings.append(
                Finding(TABLE_DIFFERS, r.day, f"receipt {r.file_name} has no row in daily_receipts")
            )


def _check_warehouse(client: Any, chain: list[Receipt], out: ReceiptsResult) -> None:
    latest: dict[date, Receipt] = {}
    for r in chain:
        if r.day not in latest or r.seq > latest[r.day].seq:
            latest[r.day] = r
    out.days = len(latest)
    for day in sorted(latest):
        receipt = latest[day]
        found = read_day(client, day, leaves=True)
        out.events += len(found.events)
        _compare_day(day, receipt, found.events, out)
        if found.repeated:
            out.findings.append(
                Finding(
                    EVENTS_REPEATED, day, "events held in more than one row", tuple(found.repeated)
                )
            )
        if found.leaves_differ:
            ids = {i for i, _ in found.leaves_differ}
            out.findings.append(
                Finding(
                    LEAVES_CHANGED,
                    day,
                    f"metaData leaves of {len(ids)} event(s) differ from their meta_data "
                    "(audit_log_metadata changed)",
                    tuple(f"{i} {path}" for i, path in found.leaves_differ),
                )
            )
    if latest:
        start = day_bounds(min(latest))[0]
        end = day_bounds(max(latest))[1]
        for day in days_with_events(client, start, end):
            if day not in latest:
                found = read_day(client, day, leaves=False)
                out.findings.append(
                    Finding(
                        DAY_UNRECEIPTED,
                        day,
                        "events on a day that has no receipt",
                        tuple(sorted(i for i, _ in found.events)),
                    )
                )


def _compare_day(
    day: date, receipt: Receipt, events: list[tuple[str, str]], out: ReceiptsResult
) -> None:
    held = dict(events)
    attested = dict(receipt.events)
    deleted = sorted(set(attested) - set(held))
    added = sorted(set(held) - set(attested))
    changed = sorted(i for i in set(held) & set(attested) if held[i] != attested[i])
    where = f"since receipt {receipt.file_name}"
    if deleted:
        out.findings.append(
            Finding(EVENTS_DELETED, day, f"{len(deleted)} event(s) deleted {where}", tuple(deleted))
        )
    if added:
        out.findings.append(
            Finding(EVENTS_ADDED, day, f"{len(added)} event(s) added {where}", tuple(added))
        )
    if changed:
        out.findings.append(
            Finding(EVENTS_CHANGED, day, f"{len(changed)} event(s) changed {where}", tuple(changed))
        )
    if not (deleted or added or changed) and merkle_root(held.values()) != receipt.merkle_root:
        out.findings.append(Finding(EVENTS_CHANGED, day, f"the day's events differ {where}"))


def fingerprint(public_key: str) -> str:
    """A short name of a public key for one line of text."""
    return hashlib.sha256(public_key.encode()).hexdigest()[:16]
