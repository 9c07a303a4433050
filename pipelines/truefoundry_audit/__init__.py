"""dlt source of TrueFoundry's audit logs (`GET /api/svc/v1/audit-logs`).

    import dlt
    from pipelines.truefoundry_audit import truefoundry_audit

    pipeline = dlt.pipeline("tfy_audit", destination="duckdb", dataset_name="truefoundry_audit")
    pipeline.run(truefoundry_audit(), loader_file_format="parquet")

The source itself is in `source.py`, imported on first use: the worker processes that decode
pages import this package's `pages` and `rows` modules, and should not pay for importing dlt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import AuditLogClient, AuditLogFilters
    from .source import truefoundry_audit

__all__ = ["AuditLogClient", "AuditLogFilters", "truefoundry_audit"]


def __getattr__(name: str) -> Any:
    if name == "truefoundry_audit":
        from .source import truefoundry_audit

        return truefoundry_audit
    if name in ("AuditLogClient", "AuditLogFilters"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
