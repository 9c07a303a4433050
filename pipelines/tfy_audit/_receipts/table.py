"""The `daily_receipts` table: every receipt issued, one row each, written by SQL as
`sync_runs` and `verify_runs` are (DuckDB, PostgreSQL). A copy for SQL and dashboards, and the
state the next issue reads (which days have receipts, the chain's end) without reading every
file; the files are the evidence, and verify checks the two agree."""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from tfy_audit._receipts.receipt import Receipt, receipt_from_json

DAILY_RECEIPTS: Final = "daily_receipts"

_COLUMNS: Final = (
    ("receipt_hash", "TEXT NOT NULL"),
    ("chain_index", "BIGINT NOT NULL"),
    ("day", "DATE NOT NULL"),
    ("seq", "BIGINT NOT NULL"),
    ("event_count", "BIGINT NOT NULL"),
    ("service_count", "BIGINT"),
    ("merkle_root", "TEXT NOT NULL"),
    ("prev_hash", "TEXT"),
    ("supersedes", "TEXT"),
    ("issued_at", "TEXT NOT NULL"),
    ("public_key", "TEXT"),
    ("signature", "TEXT"),
    ("dataset_name", "TEXT NOT NULL"),
)
_NAMES: Final = tuple(name for name, _ in _COLUMNS)


def ensure_table(client: Any) -> str:
    """The table's qualified name, created if missing (on an open SQL client)."""
    if not client.has_dataset():
        client.create_dataset()
    table: str = client.make_qualified_table_name(DAILY_RECEIPTS)
    ddl = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} ({ddl})")
    return table


def insert_receipt(client: Any, table: str, receipt: Receipt) -> None:
    """Append one receipt's row (replacing a row of the same hash: a catch-up after a kill)."""
    values = (
        receipt.hash,
        receipt.index,
        receipt.day,
        receipt.seq,
        receipt.count,
        receipt.service_count,
        receipt.merkle_root,
        receipt.prev,
        receipt.supersedes,
        receipt.issued_at,
        receipt.public_key,
        receipt.signature,
        receipt.dataset,
    )
    with client.begin_transaction():
        client.execute_sql(f"DELETE FROM {table} WHERE receipt_hash = %s", receipt.hash)
        marks = ", ".join(["%s"] * len(values))
        client.execute_sql(f"INSERT INTO {table} ({', '.join(_NAMES)}) VALUES ({marks})", *values)


def has_table(client: Any) -> bool:
    try:
        client.execute_sql(
            f"SELECT 1 FROM {client.make_qualified_table_name(DAILY_RECEIPTS)} WHERE 1 = 0"
        )
    except Exception:
        return False
    return True


def read_receipts(client: Any) -> list[tuple[str, Receipt]]:
    """Every row as (its receipt_hash column, the receipt it describes, without events), in
    chain order; rows that do not make a receipt are skipped by the caller's checks."""
    if not has_table(client):
        return []
    table = client.make_qualified_table_name(DAILY_RECEIPTS)
    rows = client.execute_sql(
        f"SELECT {', '.join(_NAMES)} FROM {table} ORDER BY chain_index, receipt_hash"
    )
    out: list[tuple[str, Receipt]] = []
    for row in rows or []:
        data = dict(zip(_NAMES, row, strict=True))
        day = data["day"]
        receipt = receipt_from_json(
            {
                "version": 1,
                "canonical": 1,
                "dataset": data["dataset_name"],
                "index": int(data["chain_index"]),
                "day": day.isoformat() if isinstance(day, date) else str(day),
                "seq": int(data["seq"]),
                "count": int(data["event_count"]),
                "merkle_root": data["merkle_root"],
                "service_count": (
                    None if data["service_count"] is None else int(data["service_count"])
                ),
                "prev": data["prev_hash"],
                "supersedes": data["supersedes"],
                "issued_at": data["issued_at"],
                "public_key": data["public_key"],
                "signature": data["signature"],
            }
        )
        out.append((str(data["receipt_hash"]), receipt))
    return out
