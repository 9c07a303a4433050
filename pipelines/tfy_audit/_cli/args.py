"""The parsed command line as typed options: the destination, the filters, `SyncOptions`, and
the existing pipeline a reading command opens."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tfy_audit._cli.parser import filter_dest, flag_dest
from tfy_audit._core.errors import UsageError

if TYPE_CHECKING:
    from tfy_audit._core.options import DestinationOptions, SyncOptions
    from tfy_audit._service.client import AuditLogFilters


def filters_from_args(args: argparse.Namespace) -> AuditLogFilters:
    from tfy_audit._core.options import filter_names
    from tfy_audit._service.client import AuditLogFilters

    return AuditLogFilters.from_mapping(
        {name: getattr(args, filter_dest(name), None) for name in filter_names()}
    )


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line, by their path in SyncOptions."""
    from tfy_audit._core.options import (
        DESTINATION_FLAGS,
        SOURCE_FLAGS,
        SYNC_FLAGS,
        WINDOW_FLAGS,
        parse_flag,
    )

    values: dict[str, Any] = {}
    for flag in (*DESTINATION_FLAGS, *SOURCE_FLAGS, *WINDOW_FLAGS, *SYNC_FLAGS):
        given = getattr(args, flag_dest(flag), None)
        if given is not None:
            values[flag.path] = parse_flag(flag, given)
    return values


def sync_options_from_args(args: argparse.Namespace) -> SyncOptions:
    from tfy_audit._core.options import SyncOptions, options_from_values, validate
    from tfy_audit._service.decoders import default_workers

    values = _flag_values(args)
    values["filters"] = filters_from_args(args)
    if "since" not in values:
        since = _configured_since()
        if since is not None:
            values["since"] = since
    if args.command == "sync" and "workers" not in values:
        values["workers"] = default_workers()
    options = options_from_values(values, SyncOptions())
    validate(options)
    return options


def _configured_since() -> Any:
    """`sources.truefoundry_audit.since` from dlt config (.dlt/config.toml, or the
    SOURCES__TRUEFOUNDRY_AUDIT__SINCE environment variable)."""
    from tfy_audit._core.options import parse_since
    from tfy_audit._source.config import _from_dlt

    text = _from_dlt("since")
    return parse_since(text, "since (sources.truefoundry_audit.since)") if text else None


def target_from_args(args: argparse.Namespace) -> Any:
    from tfy_audit._core.options import options_from_values

    return options_from_values(_flag_values(args)).target


def existing_pipeline(args: argparse.Namespace, *, reads_only: bool = False) -> Any:
    """The pipeline of an earlier sync, its schema restored from the destination. `reads_only`:
    for a command that only reads, which works on a DuckDB file that refuses writes."""
    from tfy_audit._warehouse.destination import make_pipeline, reading_pipeline

    require_database(args)
    target = target_from_args(args)
    pipeline = reading_pipeline(target) if reads_only else make_pipeline(target)
    pipeline.sync_destination()
    return pipeline


def require_database(args: argparse.Namespace) -> None:
    """Read-only commands create nothing: a missing DuckDB file is refused."""
    from tfy_audit._core.options import options_from_values, validate_target
    from tfy_audit._warehouse.adapter import warehouse_for

    target: DestinationOptions = options_from_values(_flag_values(args)).target
    validate_target(target)
    database = warehouse_for(target).database_file(target)
    if database is not None and not database.exists():
        raise UsageError(
            f"{target.db} does not exist; run `tfy-audit sync` first, or pass the --db it wrote"
        )
