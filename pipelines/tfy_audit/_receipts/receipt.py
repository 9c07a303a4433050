"""A daily receipt: what the warehouse held of one UTC day when it was issued, in a chain.

The header (everything but the signature and the event list) is what is hashed and signed:
its canonical JSON (canonical.py). `prev` is the hash of the receipt issued just before it (of
any day: the chain is the order of issue), `supersedes` the hash of the same day's receipt it
re-issues (late events, the lookback's corrections), so nothing is ever rewritten: a re-issue
is a new receipt at the chain's end. The event list `events` ((id, event hash), by hash) lets
verify name the events that differ; its Merkle root is in the header, so the list is bound to
the signature without being part of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Final

from tfy_audit._receipts.canonical import CANONICAL_VERSION, canonical_json

RECEIPT_VERSION: Final = 1

_HEADER: Final = (
    "version",
    "canonical",
    "dataset",
    "index",
    "day",
    "seq",
    "count",
    "merkle_root",
    "service_count",
    "prev",
    "supersedes",
    "issued_at",
    "public_key",
)


@dataclass(frozen=True)
class Receipt:
    dataset: str
    index: int  # its place in the chain, from 0
    day: date
    seq: int  # 0: the day's first receipt; n: its n-th re-issue
    count: int
    merkle_root: str
    service_count: int | None  # the service's count of the day at issue; None: not asked
    prev: str | None
    supersedes: str | None
    issued_at: str
    public_key: str | None = None
    signature: str | None = None
    events: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def header(self) -> dict[str, Any]:
        return {
            "version": RECEIPT_VERSION,
            "canonical": CANONICAL_VERSION,
            "dataset": self.dataset,
            "index": self.index,
            "day": self.day.isoformat(),
            "seq": self.seq,
            "count": self.count,
            "merkle_root": self.merkle_root,
            "service_count": self.service_count,
            "prev": self.prev,
            "supersedes": self.supersedes,
            "issued_at": self.issued_at,
            "public_key": self.public_key,
        }

    def header_bytes(self) -> bytes:
        return canonical_json(self.header())

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the header's canonical JSON: what the next receipt points at."""
        return hashlib.sha256(self.header_bytes()).hexdigest()

    @property
    def file_name(self) -> str:
        return file_name(self.day, self.seq)

    def file_json(self) -> dict[str, Any]:
        return self.header() | {
            "hash": self.hash,
            "signature": self.signature,
            "events": [list(pair) for pair in self.events],
        }

    def signed(self, signature: str) -> Receipt:
        return replace(self, signature=signature)


def file_name(day: date, seq: int) -> str:
    """`2026-01-05.r0.json`: a day's receipts sort by day, then by issue."""
    return f"{day.isoformat()}.r{seq}.json"


def receipt_from_json(data: Any) -> Receipt:
    """A receipt file's content; ValueError naming what is wrong with its shape."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in _HEADER if k not in data]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    if data["version"] != RECEIPT_VERSION or data["canonical"] != CANONICAL_VERSION:
        raise ValueError(f"version {data['version']!r} is not one this tfy-audit reads")
    events = data.get("events") or []
    if not isinstance(events, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in events
    ):
        raise ValueError("its events are not [id, hash] pairs")
    try:
        return Receipt(
            dataset=str(data["dataset"]),
            index=_int(data["index"]),
            day=date.fromisoformat(str(data["day"])),
            seq=_int(data["seq"]),
            count=_int(data["count"]),
            merkle_root=str(data["merkle_root"]),
            service_count=None if data["service_count"] is None else _int(data["service_count"]),
            prev=_text(data["prev"]),
            supersedes=_text(data["supersedes"]),
            issued_at=str(data["issued_at"]),
            public_key=_text(data["public_key"]),
            signature=_text(data.get("signature")),
            events=tuple((p[0], p[1]) for p in events),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a field has the wrong type ({exc})") from None


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
