"""`open_dataset`: the synced dataset as a DuckDB connection, for people reading it from Python
(docs/lakehouse.md), through the same readers `tfy-audit sql` uses (sql_query.py).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import DestinationOptions, validate_target


def open_dataset(target: DestinationOptions) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on the dataset `target` names, its schema the default one, so
    `audit_logs`, `subjects`, ... and the analysis views answer to their plain names.

    - duckdb: the database file, opened read-only (while a sync writes it, opening fails);
    - filesystem (Parquet or Delta): an in-memory DuckDB with the tables read in, as `verify`
      and `report` read them (its memory follows the tables' size), with `_dlt_loads` and the
      analysis views.

    Other destinations are read with their own clients, or dlt's `pipeline.dataset()`. The
    caller closes the connection."""
    from tfy_audit._warehouse.destination import restored_pipeline
    from tfy_audit._warehouse.lakehouse import OFFLINE_DUCKDB, connect
    from tfy_audit._warehouse.sql_query import _use_dataset

    validate_target(target)
    if target.destination == "duckdb":
        if not Path(target.db).expanduser().exists():
            raise UsageError(
                f"{target.db} does not exist; run `tfy-audit sync` first, or pass the db it wrote"
            )
        con = duckdb.connect(
            str(Path(target.db).expanduser()), read_only=True, config=OFFLINE_DUCKDB
        )
        try:
            _use_dataset(con, target.dataset, target.db)
        except BaseException:
            con.close()
            raise
        return con
    if target.destination != "filesystem":
        raise UsageError(
            f"open_dataset reads the duckdb and filesystem destinations, not "
            f"{target.destination}; query it with its own client, or dlt's pipeline.dataset()"
        )
    with restored_pipeline(target, read_only=True) as pipeline:
        return connect(pipeline)
