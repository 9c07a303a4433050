"""The mark an export leaves beside what it wrote: for each Security Lake partition key
(region and account) the UTC days it wrote, each with the fingerprint of the day's events
then. The next run writes again the days whose fingerprint changed (late events, corrections
the lookback found, events of a new day) and only those; a day whose events are all gone has
its partitions emptied. It lives in the export's root (`_tfy_audit/ocsf-export.json`), so any
machine exporting to the same place continues from it, and it is rewritten after each day, so
an interrupted export redoes at most the day it was writing."""

from __future__ import annotations

import json
from typing import Any, Final

from tfy_audit._core.errors import UsageError
from tfy_audit._export.store import Store

MARK_FILE: Final = "_tfy_audit/ocsf-export.json"
_VERSION: Final = 1

# partition key ("region/account") -> day (YYYYMMDD) -> fingerprint
Marks = dict[str, dict[str, str]]


def read_marks(store: Store) -> Marks:
    text = store.read_text(MARK_FILE)
    if text is None:
        return {}
    try:
        document: Any = json.loads(text)
        partitions = document["partitions"]
        if document.get("version") != _VERSION or not isinstance(partitions, dict):
            raise ValueError("unknown version")
        return {str(k): {str(d): str(f) for d, f in v.items()} for k, v in partitions.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"{store.shown}/{MARK_FILE} is not an export mark tfy-audit wrote; remove it to "
            "export every day again, or pass another --out"
        ) from exc


def write_marks(store: Store, marks: Marks) -> None:
    document = {"version": _VERSION, "partitions": marks}
    store.write_text(MARK_FILE, json.dumps(document, indent=1, sort_keys=True) + "\n")
