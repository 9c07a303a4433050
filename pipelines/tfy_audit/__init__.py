"""tfy-audit: a TrueFoundry control plane's audit trail in a warehouse you own.

The plain dlt source, inside a pipeline of your own:

    import dlt
    from tfy_audit import truefoundry_audit

    pipeline = dlt.pipeline("my_audit", destination="duckdb", dataset_name="truefoundry_audit")
    pipeline.run(truefoundry_audit(), loader_file_format="parquet")

What `tfy-audit sync` does (count-planned windows, chunk commits, crash recovery, the lock and
the views), from Python:

    from tfy_audit import DestinationOptions, SyncOptions, run_sync

    summary = run_sync(SyncOptions(host=..., target=DestinationOptions(db="audit.duckdb")))

Names are imported on first use: the worker processes that decode pages import this package's
`pages` and `rows` modules and should not pay for importing dlt.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfy_audit._core.errors import (
        ApiError,
        AuthenticationError,
        ConfigurationError,
        DestinationError,
        NotAControlPlaneError,
        RequestRejectedError,
        RetriesExhaustedError,
        SyncAlreadyRunningError,
        TfyAuditError,
        UsageError,
    )
    from tfy_audit._core.options import DestinationOptions, SyncOptions, SyncSummary
    from tfy_audit._engine.sync import run_sync
    from tfy_audit._service.client import AuditLogClient, AuditLogFilters
    from tfy_audit._source.dlt_source import truefoundry_audit

from tfy_audit._core.version import __version__

# public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "truefoundry_audit": "._source.dlt_source",
    "run_sync": "._engine.sync",
    "SyncOptions": "._core.options",
    "SyncSummary": "._core.options",
    "DestinationOptions": "._core.options",
    "AuditLogClient": "._service.client",
    "AuditLogFilters": "._service.client",
    **{
        name: "._core.errors"
        for name in (
            "TfyAuditError",
            "UsageError",
            "ConfigurationError",
            "SyncAlreadyRunningError",
            "ApiError",
            "AuthenticationError",
            "NotAControlPlaneError",
            "RequestRejectedError",
            "RetriesExhaustedError",
            "DestinationError",
        )
    },
}

__all__ = [
    "ApiError",
    "AuditLogClient",
    "AuditLogFilters",
    "AuthenticationError",
    "ConfigurationError",
    "DestinationError",
    "DestinationOptions",
    "NotAControlPlaneError",
    "RequestRejectedError",
    "RetriesExhaustedError",
    "SyncAlreadyRunningError",
    "SyncOptions",
    "SyncSummary",
    "TfyAuditError",
    "UsageError",
    "__version__",
    "run_sync",
    "truefoundry_audit",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
