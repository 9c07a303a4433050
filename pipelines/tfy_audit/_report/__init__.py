"""The offline HTML report.

Names are imported on first use, so the command line can read `REPORT_FLAGS` for `--help`
without importing the report's readers (and dlt with them).

Private: the public API is `tfy_audit.__all__`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfy_audit._report.data import ReportSummary
    from tfy_audit._report.options import (
        REPORT_FLAGS,
        ReportFlag,
        ReportOptions,
        options_from_text,
    )
    from tfy_audit._report.report import write_report

_EXPORTS: dict[str, str] = {
    "ReportSummary": ".data",
    "REPORT_FLAGS": ".options",
    "ReportFlag": ".options",
    "ReportOptions": ".options",
    "options_from_text": ".options",
    "write_report": ".report",
}

__all__ = [
    "REPORT_FLAGS",
    "ReportFlag",
    "ReportOptions",
    "ReportSummary",
    "options_from_text",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
