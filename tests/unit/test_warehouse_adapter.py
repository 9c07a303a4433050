"""The destination kind is chosen once, from dlt's capabilities, in `_warehouse/`: the adapter
each destination gets, what each adapter decides, and no branch on a destination's name (or
read of dlt's pipeline state) anywhere else in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tfy_audit._compat.dlt import destination_from_reference, sources_state
from tfy_audit._core.options import DestinationOptions
from tfy_audit._warehouse.adapter import choose, warehouse_for
from tfy_audit._warehouse.delta import DeltaFiles
from tfy_audit._warehouse.duckdb_file import DuckDBFile
from tfy_audit._warehouse.files import ParquetFiles
from tfy_audit._warehouse.generic import SqlWarehouse
from tfy_audit._warehouse.postgres import PostgresWarehouse

PACKAGE = Path(__file__).resolve().parents[2] / "pipelines" / "tfy_audit"
# dlt's destination names, as a branch on one would spell them
NAMES = frozenset(
    {"duckdb", "motherduck", "postgres", "redshift", "filesystem", "bigquery", "snowflake"}
)
# `--db` is the duckdb destination's own flag; the core validates it below the warehouse layer
ALLOWED = {"_core/options.py"}


@pytest.mark.parametrize(
    ("name", "table_format", "kind"),
    [
        ("duckdb", None, DuckDBFile),
        ("postgres", None, PostgresWarehouse),
        ("filesystem", None, ParquetFiles),
        ("filesystem", "delta", DeltaFiles),
        ("motherduck", None, SqlWarehouse),
        ("redshift", None, SqlWarehouse),
        ("bigquery", None, SqlWarehouse),
    ],
)
def test_each_destination_gets_the_adapter_of_its_kind(
    name: str, table_format: str | None, kind: type
) -> None:
    adapter = choose(destination_from_reference(name), table_format)
    assert type(adapter) is kind


def test_what_each_adapter_decides_is_what_the_name_checks_decided() -> None:
    """The figures the 25 name branches gave, per destination (issue 23)."""
    decided = {
        (name, fmt): (
            a.merges,
            a.loader_file_format,
            a.load_workers,
            a.holds_nul,
            a.runs_by_sql,
            a.holds_connection,
            a.hashes_keys,
            a.files,
            a.lock,
            a.query_route,
        )
        for name, fmt in [
            ("duckdb", None),
            ("postgres", None),
            ("filesystem", None),
            ("filesystem", "delta"),
            ("motherduck", None),
            ("redshift", None),
            ("bigquery", None),
        ]
        for a in [choose(destination_from_reference(name), fmt)]
    }
    assert decided == {
        ("duckdb", None): (
            True, "parquet", 1, True, True, True, True, False, "lock file", "duckdb file"
        ),
        ("postgres", None): (
            True, "insert_values", None, False, True, False, False, False,
            "postgres advisory lock", "postgres",
        ),
        ("filesystem", None): (
            False, "parquet", None, True, False, False, False, True, "none", "files"
        ),
        ("filesystem", "delta"): (
            True, "parquet", None, True, False, False, False, True, "none", "files"
        ),
        ("motherduck", None): (
            True, "parquet", None, True, True, False, False, False, "none", None
        ),
        ("redshift", None): (True, None, None, False, False, False, False, False, "none", None),
        ("bigquery", None): (True, None, None, True, False, False, False, False, "none", None),
    }  # fmt: skip


def test_no_destination_is_a_warehouse_that_merges_nothing() -> None:
    adapter = choose(None, None)
    assert (adapter.merges, adapter.holds_nul, adapter.files) == (False, True, False)


def test_a_target_picks_its_working_dir_from_its_adapter(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    duck = DestinationOptions(db=str(db))
    pg = DestinationOptions(destination="postgres", dataset="x y")
    unknown = DestinationOptions(destination="no_such_destination", dataset="d")
    assert warehouse_for(duck).pipelines_dir(duck) == str(tmp_path / ".audit.duckdb.pipelines")
    assert warehouse_for(pg).pipelines_dir(pg) == ".tfy-audit/pipelines/postgres-x_y"
    assert type(warehouse_for(unknown)) is SqlWarehouse
    assert warehouse_for(unknown).pipelines_dir(unknown) == (
        ".tfy-audit/pipelines/no_such_destination-d"
    )
    assert warehouse_for(duck).database_file(duck) == db
    assert warehouse_for(pg).database_file(pg) is None


def test_a_source_state_is_read_from_the_pipeline_state() -> None:
    state = {"sources": {"truefoundry_audit": {"loaded_until": "x"}, "other": {"a": 1}}}
    assert sources_state(state, "truefoundry_audit") == {"loaded_until": "x"}
    assert sources_state(state, "missing") == {}
    assert sources_state(None, "truefoundry_audit") == {}
    assert sources_state({}, "truefoundry_audit") == {}


def _name_branches(tree: ast.AST) -> list[int]:
    """Lines comparing something with a destination's name, or reading `destination_name` in a
    comparison; and lines reading `["sources"]` / `.get("sources")` of a pipeline state."""
    found: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            constants = {
                c.value
                for p in parts
                for c in ([p] if not isinstance(p, ast.Tuple | ast.List | ast.Set) else p.elts)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            named = any(
                isinstance(n, ast.Attribute) and n.attr == "destination_name"
                for p in parts
                for n in ast.walk(p)
            )
            if constants & NAMES or named:
                found.append(node.lineno)
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == "sources"
        ):
            found.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "sources"
        ):
            found.append(node.lineno)
    return found


def test_no_module_outside_the_warehouse_branches_on_a_destination_name() -> None:
    """A destination kind is the adapter's business (adapter.choose); dlt's pipeline state is
    read through _compat.dlt."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("_warehouse/", "_compat/", "simulator/")) or relative in ALLOWED:
            continue
        for line in _name_branches(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{relative}:{line}")
    assert offenders == []


def test_the_check_finds_a_name_branch() -> None:
    code = (
        'if pipeline.destination.destination_name == "x": pass\n'
        'if target.destination in ("duckdb", "motherduck"): pass\n'
        'state = pipeline.state["sources"]\n'
        'other = pipeline.state.get("sources", {})\n'
        "fine = target.destination\n"
    )
    assert sorted(_name_branches(ast.parse(code))) == [1, 2, 3, 4]
