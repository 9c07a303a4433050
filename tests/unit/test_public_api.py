"""The package's public surface: what `__all__` lists is exactly what resolves."""

from __future__ import annotations

import tfy_audit


def test_all_lists_exactly_the_exported_names() -> None:
    assert set(tfy_audit.__all__) == {"__version__", *tfy_audit._EXPORTS}
    for name in tfy_audit.__all__:
        assert getattr(tfy_audit, name) is not None, name


def test_the_errors_share_one_base() -> None:
    errors = [n for n in tfy_audit.__all__ if n.endswith("Error")]
    assert errors
    for name in errors:
        assert issubclass(getattr(tfy_audit, name), tfy_audit.TfyAuditError), name
