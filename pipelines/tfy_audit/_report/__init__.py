"""The offline HTML report.

Private: the public API is `tfy_audit.__all__`.
"""

from tfy_audit._report.data import ReportSummary
from tfy_audit._report.options import REPORT_FLAGS, ReportFlag, ReportOptions, options_from_text
from tfy_audit._report.report import write_report

__all__ = [
    "REPORT_FLAGS",
    "ReportFlag",
    "ReportOptions",
    "ReportSummary",
    "options_from_text",
    "write_report",
]
