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

`__all__` is the whole public surface, with every type a public signature names; every other
module is private (`_`-prefixed) and may change in any release.

Names are imported on first use: the worker processes that decode pages import this package's
private `pages` and `rows` modules and should not pay for importing dlt.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

# The export table, written once: each line below is a public name and the private module that
# defines it. Type checkers read the imports; at runtime they are never executed, and
# `__getattr__` imports a name from the module the same line names, on first use.
if TYPE_CHECKING:
    from tfy_audit._core.errors import ApiError as ApiError
    from tfy_audit._core.errors import AuthenticationError as AuthenticationError
    from tfy_audit._core.errors import ConfigurationError as ConfigurationError
    from tfy_audit._core.errors import DestinationError as DestinationError
    from tfy_audit._core.errors import NotAControlPlaneError as NotAControlPlaneError
    from tfy_audit._core.errors import RequestRejectedError as RequestRejectedError
    from tfy_audit._core.errors import RetriesExhaustedError as RetriesExhaustedError
    from tfy_audit._core.errors import SyncAlreadyRunningError as SyncAlreadyRunningError
    from tfy_audit._core.errors import TfyAuditError as TfyAuditError
    from tfy_audit._core.errors import UsageError as UsageError
    from tfy_audit._core.options import DestinationOptions as DestinationOptions
    from tfy_audit._core.options import SyncOptions as SyncOptions
    from tfy_audit._core.options import SyncSummary as SyncSummary
    from tfy_audit._core.query import AuditLogFilters as AuditLogFilters
    from tfy_audit._core.query import RetryPolicy as RetryPolicy
    from tfy_audit._core.settings import HISTORY_START as HISTORY_START
    from tfy_audit._engine.loader import SyncProgress as SyncProgress
    from tfy_audit._engine.sync import run_sync as run_sync
    from tfy_audit._service.anomalies import Anomaly as Anomaly
    from tfy_audit._service.anomalies import AnomalyAction as AnomalyAction
    from tfy_audit._service.anomalies import AnomalyKind as AnomalyKind
    from tfy_audit._service.budget import ByteBudget as ByteBudget
    from tfy_audit._service.budget import Hold as Hold
    from tfy_audit._service.client import AuditLogClient as AuditLogClient
    from tfy_audit._service.client import ClientStats as ClientStats
    from tfy_audit._service.fetch import WindowReport as WindowReport
    from tfy_audit._service.windows import Window as Window
    from tfy_audit._source.dlt_source import truefoundry_audit as truefoundry_audit
    from tfy_audit._warehouse.dataset import open_dataset as open_dataset


def _read_exports() -> dict[str, str]:
    """Public name -> defining module, read from the `TYPE_CHECKING` block of this file (each
    line `from <module> import <name> as <name>`); plain text, so importing the package stays as
    cheap as it was for the decoding worker processes."""
    with open(__file__, encoding="utf-8") as source:
        block = source.read().partition("if TYPE_CHECKING:\n")[2].partition("\n\n")[0]
    table: dict[str, str] = {}
    for line in block.splitlines():
        _, module, _, _, _, name = line.split()  # a line of another form fails every import
        table[name] = module
    return table


_EXPORTS = _read_exports()

# derived from the table above: each public name is written once
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> object:
    # `__version__` is read from the package's metadata on first use: importlib.metadata would
    # cost a command that never asks (`--help`) a noticeable part of its start
    module = "tfy_audit._core.version" if name == "__version__" else _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
