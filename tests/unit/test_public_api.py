"""The package's public surface: what `__all__` lists is exactly what resolves."""

from __future__ import annotations

import inspect

import tfy_audit
from tfy_audit._compat.dlt import source_config_fields
from tfy_audit._core import settings
from tfy_audit._source.dlt_source import chunk_source


def test_all_lists_exactly_the_exported_names() -> None:
    assert set(tfy_audit.__all__) == {"__version__", *tfy_audit._EXPORTS}
    for name in tfy_audit.__all__:
        assert getattr(tfy_audit, name) is not None, name


def test_the_errors_share_one_base() -> None:
    errors = [n for n in tfy_audit.__all__ if n.endswith("Error")]
    assert errors
    for name in errors:
        assert issubclass(getattr(tfy_audit, name), tfy_audit.TfyAuditError), name


USER_SETTINGS = [
    "host",
    "api_key",
    "start",
    "end",
    "lookback_seconds",
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


def test_the_sources_defaults_come_from_the_settings() -> None:
    params = inspect.signature(tfy_audit.truefoundry_audit).parameters
    assert params["lookback_seconds"].default == settings.DEFAULT_LOOKBACK.total_seconds()
    assert params["page_size"].default == settings.DEFAULT_PAGE_SIZE
    assert params["concurrency"].default == settings.DEFAULT_CONCURRENCY
    assert params["max_offset"].default == settings.DEFAULT_MAX_OFFSET
    assert params["timeout"].default == settings.DEFAULT_TIMEOUT


def test_the_engines_chunk_source_has_no_config_fields() -> None:
    """Every argument of the private source is required, so dlt injects none from config."""
    params = inspect.signature(chunk_source).parameters.values()
    assert params and all(p.default is inspect.Parameter.empty for p in params)
    assert source_config_fields(chunk_source) == []
