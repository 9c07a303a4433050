"""The package's public surface: `tfy_audit.__all__` is all of it, with every type its signatures
name; every other module is private, and the docs never reach into one."""

from __future__ import annotations

import dataclasses
import inspect
import pkgutil
import re
import sys
import typing
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import tfy_audit
from tfy_audit._compat.dlt import source_config_fields
from tfy_audit._core import settings
from tfy_audit._source.dlt_source import chunk_source

from tests.conftest import REPO

PUBLIC = {
    "__version__",
    # what to run
    "truefoundry_audit",
    "run_sync",
    "open_dataset",
    # what it takes
    "SyncOptions",
    "DestinationOptions",
    "AuditLogFilters",
    "RetryPolicy",
    "HISTORY_START",
    # what it reports
    "SyncSummary",
    "SyncProgress",
    "WindowReport",
    "Window",
    "Anomaly",
    "AnomalyKind",
    "AnomalyAction",
    # the client, what it counts, and the bytes its pages may hold in memory at once
    "AuditLogClient",
    "ClientStats",
    "ByteBudget",
    "Hold",
    # what it raises
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
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(tfy_audit.__all__) == PUBLIC
    assert len(tfy_audit.__all__) == len(PUBLIC)  # no name listed twice
    assert sorted(dir(tfy_audit)) == sorted(PUBLIC)
    for name in tfy_audit.__all__:
        assert getattr(tfy_audit, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'SyncSummery'"):
        tfy_audit.SyncSummery  # noqa: B018


def test_every_module_but_the_simulator_is_private() -> None:
    public = {
        m.name
        for m in pkgutil.walk_packages(tfy_audit.__path__, "tfy_audit.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])
    }
    assert {m.split(".")[1] for m in public} == {"simulator"}


def test_the_errors_share_one_base() -> None:
    errors = [n for n in tfy_audit.__all__ if n.endswith("Error")]
    assert errors
    for name in errors:
        assert issubclass(getattr(tfy_audit, name), tfy_audit.TfyAuditError), name


# -- every type a public signature names is public ------------------------------------------

# third-party packages whose own public types our signatures mean (a dlt pipeline, an httpx
# transport, a DuckDB connection)
THIRD_PARTY = {"dlt", "httpx", "duckdb"}


def _signatures(obj: Any) -> Iterator[tuple[str, Any]]:
    """(where, annotation) for a public function's parameters and return, or a public class's
    fields, constructor and public methods."""
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            module = sys.modules[obj.__module__]
            for name, hint in typing.get_type_hints(obj, vars(module)).items():
                if not name.startswith("_"):
                    yield f"{obj.__name__}.{name}", hint
        for name, member in inspect.getmembers(obj):
            if (name == "__init__" or not name.startswith("_")) and inspect.isfunction(member):
                for where, hint in _signatures(member):
                    yield f"{obj.__name__}.{where}", hint
            elif isinstance(member, property) and member.fget is not None:
                for where, hint in _signatures(member.fget):
                    yield f"{obj.__name__}.{where}", hint
        return
    if not callable(obj):
        return
    signature = inspect.signature(obj, eval_str=True)
    for name, parameter in signature.parameters.items():
        if parameter.annotation is not inspect.Parameter.empty:
            yield f"{obj.__name__}({name})", parameter.annotation
    if signature.return_annotation is not inspect.Signature.empty:
        yield f"{obj.__name__} ->", signature.return_annotation


def _named_types(hint: Any) -> Iterator[type]:
    """The classes an annotation names, through unions, generics, Callable and Literal."""
    if isinstance(hint, typing.TypeVar) or hint in (None, type(None), Any, ...):
        return
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return
    if origin is not None:
        if isinstance(origin, type):
            yield origin
        for arg in typing.get_args(hint):
            yield from _named_types(arg)
        return
    if isinstance(hint, list):  # Callable's parameters
        for arg in hint:
            yield from _named_types(arg)
        return
    if isinstance(hint, type):
        yield hint


def _acceptable(cls: type) -> bool:
    module = cls.__module__.split(".")[0]
    top = module.removeprefix("_")  # duckdb's classes live in _duckdb
    if top == "tfy_audit":
        return getattr(tfy_audit, cls.__name__, None) is cls
    # a C module of the standard library keeps its underscore (_thread.lock on Python 3.13)
    stdlib = module in sys.stdlib_module_names or top in sys.stdlib_module_names
    return stdlib or top == "builtins" or top in THIRD_PARTY


def test_every_type_a_public_signature_names_is_public() -> None:
    seen: list[str] = []
    wrong: list[str] = []
    for name in sorted(PUBLIC - {"__version__", "HISTORY_START"}):
        for where, hint in _signatures(getattr(tfy_audit, name)):
            for cls in _named_types(hint):
                seen.append(cls.__qualname__)
                if not _acceptable(cls):
                    wrong.append(f"{where}: {cls.__module__}.{cls.__qualname__}")
    assert {"RetryPolicy", "SyncProgress", "AuditLogFilters", "WindowReport"} <= set(seen)
    assert wrong == []


def test_the_public_functions_say_what_they_take_and_return() -> None:
    """No `Any` where a type is known: the signatures of run_sync, open_dataset and the
    source."""
    for name in ("run_sync", "open_dataset", "truefoundry_audit"):
        for where, hint in _signatures(getattr(tfy_audit, name)):
            assert hint is not Any, where


# -- the plain source takes SyncOptions' names and units -------------------------------------

USER_SETTINGS = [
    "host",
    "api_key",
    "start",
    "end",
    "since",
    "lookback",
    "filters",
    "page_size",
    "concurrency",
    "max_offset",
    "timeout",
    "allow_insecure_http",
]


def test_the_source_takes_only_what_a_user_sets() -> None:
    """The engine's internals (client, chunk, known subjects, observer, pages read ahead...)
    go through a private source: neither the signature nor dlt's config shows them."""
    assert list(inspect.signature(tfy_audit.truefoundry_audit).parameters) == USER_SETTINGS
    assert source_config_fields(tfy_audit.truefoundry_audit) == USER_SETTINGS


def test_each_source_argument_is_the_sync_option_of_that_name() -> None:
    """One name per option: each argument is a `SyncOptions` field, with its default."""
    options = tfy_audit.SyncOptions()
    fields = {f.name for f in dataclasses.fields(options)}
    params = inspect.signature(tfy_audit.truefoundry_audit).parameters
    assert set(USER_SETTINGS) <= fields
    for name in ("start", "end", "since", "lookback", "page_size", "concurrency"):
        assert params[name].default == getattr(options, name), name
    for name in ("max_offset", "timeout", "allow_insecure_http"):
        assert params[name].default == getattr(options, name), name
    assert params["lookback"].default == settings.DEFAULT_LOOKBACK == timedelta(minutes=10)


def test_the_engines_chunk_source_has_no_config_fields() -> None:
    """Every argument of the private source is required, so dlt injects none from config."""
    params = inspect.signature(chunk_source).parameters.values()
    assert params and all(p.default is inspect.Parameter.empty for p in params)
    assert source_config_fields(chunk_source) == []


# -- users never import a private module ------------------------------------------------------

PRIVATE_IMPORT = re.compile(r"^\s*(from\s+tfy_audit\._\w*|import\s+tfy_audit\._\w*)", re.M)


def _user_facing_files() -> list[Path]:
    found = [REPO / "README.md", REPO / "pipelines" / "truefoundry_audit_pipeline.py"]
    found += sorted((REPO / "docs").rglob("*.md"))
    found += sorted(p for p in (REPO / "examples").rglob("*") if p.is_file())
    return found


def test_docs_and_examples_import_public_names_only() -> None:
    files = _user_facing_files()
    assert any(p.name == "lakehouse.md" for p in files)
    assert any(p.name == "tfy_audit_dagster.py" for p in files)
    offending = {
        str(path.relative_to(REPO)): PRIVATE_IMPORT.findall(path.read_text(errors="replace"))
        for path in files
    }
    assert {path: found for path, found in offending.items() if found} == {}


def test_the_private_import_pattern_catches_both_forms() -> None:
    text = "from tfy_audit._warehouse.lakehouse import connect\nimport tfy_audit._core.settings\n"
    assert len(PRIVATE_IMPORT.findall(text)) == 2
    assert PRIVATE_IMPORT.findall("from tfy_audit import open_dataset\n") == []
