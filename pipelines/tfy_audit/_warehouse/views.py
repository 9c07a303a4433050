"""Analysis views over the loaded audit trail, one `.sql` file per view in `tfy_audit/sql/`.

Each file is a single `CREATE OR REPLACE VIEW {dataset}.<name> AS SELECT ...` statement written
in SQL that DuckDB and PostgreSQL both accept; `{dataset}` stands for the destination's
fully-qualified, quoted dataset name, `{view:NAME}` for the SELECT of another view (inlined, so
a view never depends on another one existing), and `{severity_rules}`, `{timezone}`,
`{work_start}`, `{work_end}` for the `ViewParams`, and `{ocsf_*}` for the OCSF mapping's
tables (`_ocsf/mapping.py`). The files are read as package resources so
they are found in an installed wheel as well as in a checkout.
"""

from __future__ import annotations

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


def apply_views(pipeline: dlt.Pipeline, params: ViewParams = DEFAULT_PARAMS) -> list[str]:
    """Create or replace every view in the pipeline's dataset; returns the names created.

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
    created: list[str] = []
    with client:
        dataset = client.fully_qualified_dataset_name()
        for name in VIEW_NAMES:
            try:
                client.execute_sql(view_sql(name, dataset, params))
            except DatabaseUndefinedRelation as exc:
                raise DestinationError(
                    f"cannot create view {name}: {dataset} has no audit_logs table yet; "
                    "load events first (tfy-audit sync)"
                ) from exc
            created.append(name)
            logger.debug("created view %s.%s", dataset, name)
    logger.info("created %d views in %s: %s", len(created), dataset, ", ".join(created))
    return created


def view_columns(name: str) -> list[str]:
    """The names of the columns view `name` yields, in order, read off its SELECT (sqlglot
    parses it), for a reader whose client returns rows without their column names."""
    import sqlglot

    statement = sqlglot.parse_one(view_select(name, "dataset"), read="duckdb")
    if not isinstance(statement, sqlglot.exp.Query):
        raise ValueError(f"{name}.sql does not define a SELECT")
    return list(statement.named_selects)
