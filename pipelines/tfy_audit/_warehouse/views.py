"""Analysis views over the loaded audit trail, one `.sql` file per view in `tfy_audit/sql/`.

Each file is a single `CREATE OR REPLACE VIEW {dataset}.<name> AS SELECT ...` statement written
in SQL that DuckDB and PostgreSQL both accept; `{dataset}` stands for the destination's
fully-qualified, quoted dataset name, `{view:NAME}` for the SELECT of another view (inlined, so
a view never depends on another one existing), and `{severity_rules}`, `{timezone}`,
`{work_start}`, `{work_end}` for the `ViewParams`, and `{ocsf_*}` for the OCSF mapping's
tables (`_ocsf/mapping.py`). The files are read as package resources so
they are found in an installed wheel as well as in a checkout.

Where the destination kind stamps its views (a DuckDB file: `stamps_views`), each view is
created with a digest of its statement as its comment, and a sync replaces only the views
whose comment is not the digest of the statement it would run: a sync that changes nothing
binds no view again (11 statements, most of a no-op sync's view time). A view replaced by
anyone else has lost its comment there, and is replaced again. `tfy-audit views` replaces
every view.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import resources
from typing import Any, Final

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from tfy_audit._compat.dlt import SqlClientNotAvailable, uses_table_scanners
from tfy_audit._core.errors import DestinationError
from tfy_audit._ocsf.mapping import values_sql
from tfy_audit._warehouse.severity import rules_values
from tfy_audit._warehouse.view_params import DEFAULT_PARAMS, ViewParams

logger = logging.getLogger(__name__)

VIEW_NAMES: Final[tuple[str, ...]] = (
    "daily_activity",
    "subject_activity",
    "sensitive_actions",
    "resource_history",
    "deletions",
    "access_changes",
    "external_activity",
    "token_usage",
    "off_hours_activity",
    "workspace_activity",
    "ocsf_api_activity",
)

_SQL_PACKAGE: Final = "tfy_audit._warehouse.sql"
_PLACEHOLDER: Final = "{dataset}"
_COMMENT_LINE: Final = re.compile(r"^\s*--.*$", re.MULTILINE)
_VIEW_REF: Final = re.compile(r"\{view:(\w+)\}")
# a view's comment where the kind stamps its views: this, then its statement's digest
_STAMP: Final = "tfy-audit view sha256:"


def _template(name: str) -> str:
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view {name!r}; known views: {', '.join(VIEW_NAMES)}")
    return resources.files(_SQL_PACKAGE).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def view_sql(name: str, qualified_dataset: str, params: ViewParams = DEFAULT_PARAMS) -> str:
    """The `CREATE OR REPLACE VIEW` statement of view `name` in `qualified_dataset`.

    `qualified_dataset` is inserted verbatim, so pass it quoted as the destination wants it
    (`sql_client.fully_qualified_dataset_name()`).
    """
    text = _template(name)
    text = _VIEW_REF.sub(
        lambda m: "(\n" + view_select(m[1], qualified_dataset, params) + "\n)", text
    )
    if "{severity_rules}" in text:
        text = text.replace("{severity_rules}", rules_values(params.severity_rules))
    if "{ocsf_" in text:
        for placeholder, values in values_sql().items():
            text = text.replace("{" + placeholder + "}", values)
    return (
        text.replace("{timezone}", params.timezone)
        .replace("{work_start}", str(params.work_start))
        .replace("{work_end}", str(params.work_end))
        .replace(_PLACEHOLDER, qualified_dataset)
    )


def view_select(name: str, qualified_dataset: str, params: ViewParams = DEFAULT_PARAMS) -> str:
    """The `SELECT` that defines view `name`, to use as a subquery without creating the view.

    The report reads through these, so it shows the same rows as the views even where they were
    never created (or were created by an older version).
    """
    statement = _COMMENT_LINE.sub("", view_sql(name, qualified_dataset, params))
    head = re.compile(
        r"^\s*CREATE\s+OR\s+REPLACE\s+VIEW\s+"
        + re.escape(qualified_dataset)
        + r"\."
        + re.escape(name)
        + r"\s+AS\s+",
        re.IGNORECASE,
    )
    match = head.match(statement)
    if match is None:
        # a malformed file is a packaging bug, not a user error: say which file
        raise ValueError(
            f"{name}.sql does not start with CREATE OR REPLACE VIEW {{dataset}}.{name}"
        )
    return statement[match.end() :].strip().rstrip(";").strip()


def apply_views(
    pipeline: dlt.Pipeline, params: ViewParams = DEFAULT_PARAMS, *, replace_all: bool = True
) -> list[str]:
    """Create or replace every view in the pipeline's dataset; returns the names of the views
    in place. Unless `replace_all`, a view whose stamp says it is already what it would be
    replaced with is left as it is (see the module docstring).

    Raises `DestinationError` if the dataset has no `audit_logs` table yet.

    Destinations without a persistent SQL engine (e.g. `filesystem`, whose SQL client is an
    in-memory DuckDB over the files) are skipped with an INFO message and `[]`.
    """
    try:
        client: Any = pipeline.sql_client()
    except SqlClientNotAvailable:
        client = None
    # a view created in the in-memory DuckDB of a table scanner would vanish with it
    if client is None or uses_table_scanners(client):
        logger.info(
            "destination %s has no SQL engine to keep views in; views are skipped",
            pipeline.destination.destination_name if pipeline.destination else "(none)",
        )
        return []
    from tfy_audit._warehouse.adapter import warehouse_of

    stamps = warehouse_of(pipeline).stamps_views
    created: list[str] = []
    with client:
        dataset = client.fully_qualified_dataset_name()
        stamped = _stamped_views(client) if stamps and not replace_all else {}
        for name in VIEW_NAMES:
            statement = view_sql(name, dataset, params)
            stamp = _STAMP + hashlib.sha256(statement.encode()).hexdigest()
            if stamped.get(name) == stamp:
                continue
            try:
                client.execute_sql(statement)
            except DatabaseUndefinedRelation as exc:
                raise DestinationError(
                    f"cannot create view {name}: {dataset} has no audit_logs table yet; "
                    "load events first (tfy-audit sync)"
                ) from exc
            if stamps:
                client.execute_sql(f"COMMENT ON VIEW {dataset}.{name} IS '{stamp}'")
            created.append(name)
            logger.debug("created view %s.%s", dataset, name)
    if created:
        logger.info("created %d views in %s: %s", len(created), dataset, ", ".join(created))
    if len(created) < len(VIEW_NAMES):
        logger.debug("%d views in %s were current", len(VIEW_NAMES) - len(created), dataset)
    return list(VIEW_NAMES)


def _stamped_views(client: Any) -> dict[str, str]:
    """The stamps of the dataset's views, by name (a DuckDB database's catalog)."""
    rows = client.execute_sql(
        "SELECT view_name, comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = %s",
        client.dataset_name,
    )
    return {name: comment for name, comment in rows or [] if comment}


def view_columns(name: str) -> list[str]:
    """The names of the columns view `name` yields, in order, read off its SELECT (sqlglot
    parses it), for a reader whose client returns rows without their column names."""
    import sqlglot

    statement = sqlglot.parse_one(view_select(name, "dataset"), read="duckdb")
    if not isinstance(statement, sqlglot.exp.Query):
        raise ValueError(f"{name}.sql does not define a SELECT")
    return list(statement.named_selects)
