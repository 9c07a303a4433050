"""One place for each option and its default: the dataclasses, with `settings` constants; the
command line derived from them."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tfy_audit._core.settings as settings
from tfy_audit._cli.main import build_parser, sync_options_from_args
from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import (
    DESTINATION_FLAGS,
    SOURCE_FLAGS,
    SYNC_FLAGS,
    WINDOW_FLAGS,
    DestinationOptions,
    SyncOptions,
    default_of,
    duckdb_catalog,
    validate,
    validate_target,
)
from tfy_audit._service.client import AuditLogFilters, RetryPolicy
from tfy_audit._source.dlt_source import source_options

PACKAGE = Path(settings.__file__).parents[1]  # the whole package, all its layers


def sub_parser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sub.choices is not None
    chosen: argparse.ArgumentParser = sub.choices[command]
    return chosen


def test_options_are_frozen_and_their_defaults_are_the_settings() -> None:
    options = SyncOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.target.db = "x"  # type: ignore[misc]
    assert options.timeout == settings.DEFAULT_TIMEOUT
    assert options.retry.max_attempts == settings.DEFAULT_RETRIES == RetryPolicy().max_attempts
    assert options.lookback == settings.DEFAULT_LOOKBACK
    assert options.wait_for_lock == settings.DEFAULT_WAIT_FOR_LOCK
    assert options.target == DestinationOptions(
        settings.DEFAULT_DESTINATION,
        settings.DEFAULT_DUCKDB_PATH,
        settings.DEFAULT_DATASET,
        settings.DEFAULT_PIPELINE_NAME,
    )


def test_the_default_database_file_and_dataset_cannot_collide() -> None:
    assert duckdb_catalog(settings.DEFAULT_DUCKDB_PATH) != settings.DEFAULT_DATASET
    validate_target(DestinationOptions())
    with pytest.raises(UsageError, match=r"pass --db tfy_audit\.duckdb"):
        validate_target(DestinationOptions(db="truefoundry_audit.duckdb"))
    with pytest.raises(UsageError, match="same as the dataset"):
        validate_target(DestinationOptions(db="/x/Audit.v2.duckdb", dataset="audit"))


def test_a_command_line_without_flags_gives_the_dataclass_defaults() -> None:
    args = build_parser().parse_args(["sync"])
    options = sync_options_from_args(args)
    expected = dataclasses.replace(SyncOptions(), workers=options.workers)
    assert options == expected


def test_each_flag_sets_its_option() -> None:
    args = build_parser().parse_args(
        ["sync", "--timeout", "5", "--retries", "2", "--lookback", "1h", "--db", "a.duckdb",
         "--resource-type", "secret", "--since", "30d", "--wait", "9"]
    )  # fmt: skip
    options = sync_options_from_args(args)
    assert (options.timeout, options.retry.max_attempts) == (5.0, 2)
    assert options.lookback == timedelta(hours=1)
    assert options.target.db == "a.duckdb"
    assert options.filters == AuditLogFilters(resource_type="secret")
    assert options.since == timedelta(days=30)
    assert options.wait_for_lock == 9.0


def test_flags_restate_no_default_and_filters_come_from_the_filter_type() -> None:
    for flag in (*DESTINATION_FLAGS, *SOURCE_FLAGS, *WINDOW_FLAGS, *SYNC_FLAGS):
        default_of(flag.path)  # every flag names a real option
    sync = sub_parser("sync")
    for action in sync._actions:
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            assert action.default is None, f"{action.option_strings} restates a default"
    filters = [f.name for f in dataclasses.fields(AuditLogFilters)]
    flags = {a.option_strings[0] for a in sync._actions if a.option_strings}
    assert {"--" + n.replace("_", "-") for n in filters} <= flags
    assert not hasattr(settings, "FILTER_PARAMS")
    assert AuditLogFilters(resource_id="r", subject_slug="s").as_params() == {
        "resourceId": "r",
        "subjectSlug": "s",
    }


def test_the_request_timeout_is_written_once() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    written = re.findall(r"TIMEOUT[^\n=]*= *60|timeout[^\n=]*= *60", sources, re.IGNORECASE)
    assert written == ["TIMEOUT: Final = 60"]  # settings.DEFAULT_TIMEOUT
    assert "DEFAULT_TIMEOUT: Final = 60.0" in (PACKAGE / "_core" / "settings.py").read_text()


# -- the plain source reads each option as the command line does ------------------------------


def _source_options(**given: Any) -> SyncOptions:
    values: dict[str, Any] = {
        "host": None,
        "api_key": None,
        "start": None,
        "end": None,
        "since": None,
        "lookback": settings.DEFAULT_LOOKBACK,
        "filters": None,
        "page_size": settings.DEFAULT_PAGE_SIZE,
        "concurrency": settings.DEFAULT_CONCURRENCY,
        "max_offset": settings.DEFAULT_MAX_OFFSET,
        "timeout": settings.DEFAULT_TIMEOUT,
        "allow_insecure_http": False,
    }
    return source_options(**{**values, **given})


def test_the_source_reads_text_as_the_command_line_reads_the_flag() -> None:
    flags = "sync --since 30d --lookback 2h --start 2026-01-02 --end 2026-01-03T12:00:00Z "
    flags += "--resource-type secret --page-size 50"
    cli = sync_options_from_args(build_parser().parse_args(flags.split()))
    plain = _source_options(
        since="30d",
        lookback="2h",
        start="2026-01-02",
        end="2026-01-03T12:00:00Z",
        filters={"resource_type": "secret"},
        page_size=50,
    )
    assert plain == dataclasses.replace(cli, workers=0)
    assert plain.since == timedelta(days=30) and plain.lookback == timedelta(hours=2)
    assert plain.start == datetime(2026, 1, 2, tzinfo=UTC)
    assert plain.filters == AuditLogFilters(resource_type="secret")


def test_the_source_takes_the_options_own_types_too() -> None:
    since = datetime(2025, 6, 1, tzinfo=UTC)
    filters = AuditLogFilters(action="delete")
    plain = _source_options(since=since, lookback=timedelta(minutes=3), filters=filters)
    assert (plain.since, plain.lookback, plain.filters) == (since, timedelta(minutes=3), filters)
    assert plain.first_run_start(datetime(2026, 1, 1, tzinfo=UTC)) == since
    assert _source_options(lookback=None).lookback == settings.DEFAULT_LOOKBACK


def test_the_source_refuses_what_sync_refuses_with_the_same_words() -> None:
    with pytest.raises(UsageError, match=r"^--page-size 0 is outside 1\.\.") as plain:
        _source_options(page_size=0)
    with pytest.raises(UsageError) as cli:
        validate(SyncOptions(page_size=0))
    assert str(plain.value) == str(cli.value)
    with pytest.raises(UsageError, match="in the future"):
        _source_options(since="2999-01-01")
    with pytest.raises(UsageError, match="unknown filter"):
        _source_options(filters={"colour": "red"})


def test_the_old_lookback_seconds_key_is_honoured_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__LOOKBACK_SECONDS", "120")
    with pytest.warns(FutureWarning, match=r"lookback_seconds is deprecated; set .*lookback"):
        assert _source_options().lookback == timedelta(seconds=120)
    with pytest.warns(FutureWarning):  # `lookback` set as well: it wins
        assert _source_options(lookback="1h").lookback == timedelta(hours=1)
