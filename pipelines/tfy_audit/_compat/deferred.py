"""dlt's requests helper, imported when something uses it rather than at dlt's start.

dlt's runtime initialization (the first read of its configuration) imports
`dlt.sources.helpers.requests` only to call its `init(config)`: the `requests` package with
urllib3, charset_normalizer and idna, some 30 ms of every `tfy-audit` run on the project's
machine, for an HTTP client tfy-audit never uses (it has its own, httpx's). `defer_requests_helper`
puts a stand-in in its place, which keeps the configurations `init` is given and, at the first
use of anything else (dlt's telemetry when opted in, a REST source, a destination's client),
imports the real module in its place and hands it those configurations in order: what uses
it gets the module as dlt would have made it. Its submodules (`retry`, `session`) are imported
from the real package's folder as usual.

Only the command's own process defers it (`_cli/process.py`), before anything imports dlt;
nothing here imports dlt. `tests/unit/test_dlt_compat.py` checks that dlt still calls nothing but
`init` at its start, and that the real module comes back whole.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

REQUESTS_HELPER = "dlt.sources.helpers.requests"
_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands for REQUESTS_HELPER until anything but `init` is asked of it; afterwards, a
    reference to it held by then forwards everything to the real module."""

    def __init__(self, name: str, folder: str) -> None:
        super().__init__(name)
        self.__path__ = [folder]  # its submodules import from the real package's folder
        self.__dict__["_configs"] = []
        self.__dict__["_module"] = None

    def init(self, config: Any) -> None:
        if self._module is None:
            self._configs.append(config)
        else:
            self._module.init(config)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # what the import system probes for
            raise AttributeError(attr)
        return getattr(_real(self), attr)


def _real(deferred: _Deferred) -> types.ModuleType:
    with _lock:
        if deferred._module is None:
            name = deferred.__name__
            if sys.modules.get(name) is deferred:
                del sys.modules[name]
            module = importlib.import_module(name)
            for config in deferred._configs:
                module.init(config)
            deferred.__dict__["_module"] = module
        real: types.ModuleType = deferred._module
        return real


def defer_requests_helper() -> bool:
    """Put the stand-in in place, unless dlt is imported already or is not installed; returns
    whether it did."""
    if "dlt" in sys.modules or REQUESTS_HELPER in sys.modules:
        return False
    spec = importlib.util.find_spec("dlt")  # found, not imported
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations)), "sources", "helpers", "requests")
    if not (folder / "__init__.py").is_file():
        return False
    sys.modules[REQUESTS_HELPER] = _Deferred(REQUESTS_HELPER, str(folder))
    return True
