"""DuckDB's memory limit follows the memory the process may use, within a floor and a ceiling,
and an environment variable sets it outright."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tfy_audit._core.errors import UsageError
from tfy_audit._core.memory import duckdb_memory_limit, process_memory_bytes
from tfy_audit._core.settings import DUCKDB_MEMORY_LIMIT_ENV

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.mark.parametrize(
    ("available", "limit"),
    [
        (1 * GiB, "256MiB"),  # the README's container: a quarter of it, the floor
        (512 * MiB, "256MiB"),  # a small container still holds the largest row
        (1536 * MiB, "384MiB"),
        (64 * GiB, "512MiB"),  # a large machine: the ceiling
        (None, "256MiB"),  # nothing known: the floor
    ],
)
def test_the_limit_is_a_share_of_the_memory_available(available: int | None, limit: str) -> None:
    assert duckdb_memory_limit({}, lambda: available) == limit


def test_the_environment_sets_the_limit() -> None:
    assert duckdb_memory_limit({DUCKDB_MEMORY_LIMIT_ENV: " 2GB "}, lambda: GiB) == "2GB"
    assert duckdb_memory_limit({DUCKDB_MEMORY_LIMIT_ENV: "80MB"}, lambda: GiB) == "80MB"


def test_a_bad_limit_in_the_environment_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        duckdb_memory_limit({DUCKDB_MEMORY_LIMIT_ENV: "lots"}, lambda: GiB)
    assert str(caught.value) == (
        f"{DUCKDB_MEMORY_LIMIT_ENV}='lots' is not a size DuckDB reads: set it like 512MB or 2GB, "
        "or unset it to follow the memory this process may use"
    )


def test_the_cgroup_limit_wins_over_the_machine(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    v2.write_text(f"{GiB}\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert process_memory_bytes((v2, v1)) == GiB
    v2.write_text("max\n")
    machine = process_memory_bytes((v2, v1))
    assert machine is not None and machine > GiB  # this machine's physical memory
    assert process_memory_bytes((tmp_path / "absent",)) == machine


def test_a_sync_gives_duckdb_the_derived_limit_for_retried_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync's DuckDB connection keeps the small limit that holds the peak low; a retried
    load job (one that ran out of it) runs with the derived limit."""
    from tfy_audit._core.options import DestinationOptions
    from tfy_audit._warehouse.destination import make_destination

    monkeypatch.setenv(DUCKDB_MEMORY_LIMIT_ENV, "300MB")
    destination: Any = make_destination(DestinationOptions(db=str(tmp_path / "x.duckdb")))
    assert destination.config_params["credentials"].global_config["memory_limit"] == "80MB"
    assert destination.memory_limits == ("80MB", "300MB")
    monkeypatch.delenv(DUCKDB_MEMORY_LIMIT_ENV)
    destination = make_destination(DestinationOptions(db=str(tmp_path / "x.duckdb")))
    assert destination.memory_limits == ("80MB", duckdb_memory_limit())


@pytest.mark.parametrize(("destination", "workers"), [("duckdb", 1), ("postgres", None)])
def test_a_duckdb_file_is_loaded_one_job_at_a_time(destination: str, workers: int | None) -> None:
    """Jobs side by side keep DuckDB from checkpointing what each committed, so a load of large
    rows grew past the process's bound; other destinations keep dlt's default."""
    from tfy_audit._core.options import DestinationOptions
    from tfy_audit._warehouse.destination import load_workers

    assert load_workers(DestinationOptions(destination=destination)) == workers


def test_the_memory_the_process_may_use_is_set_by_the_environment() -> None:
    from tfy_audit._core.memory import memory_limit_bytes, size_bytes
    from tfy_audit._core.settings import MEMORY_LIMIT_ENV

    assert size_bytes("1GiB") == GiB and size_bytes("512MB") == 512 * 10**6
    assert size_bytes(" 1.5 GiB ") == 3 * GiB // 2 and size_bytes("lots") is None
    assert memory_limit_bytes({MEMORY_LIMIT_ENV: "1GiB"}, lambda: 64 * GiB) == GiB
    assert memory_limit_bytes({}, lambda: 64 * GiB) == 64 * GiB
    # DuckDB's retry limit follows it, as it follows a container's limit
    assert duckdb_memory_limit({MEMORY_LIMIT_ENV: "1536MiB"}, lambda: 64 * GiB) == "384MiB"
    with pytest.raises(UsageError) as caught:
        memory_limit_bytes({MEMORY_LIMIT_ENV: "lots"}, lambda: GiB)
    assert str(caught.value) == (
        f"{MEMORY_LIMIT_ENV}='lots' is not a size: set it like 1GiB or 512MB, or unset it to "
        "follow the container's or the machine's memory"
    )


def test_the_memory_gate_closes_past_its_share_counting_what_is_coming() -> None:
    from tfy_audit._core.memory import MemoryGate, resident_bytes

    held = [400 * MiB]
    gate = MemoryGate(GiB, resident=lambda: held[0])  # a share of half: 512 MiB
    assert gate.threshold == 512 * MiB
    assert not gate.over() and not gate.over(112 * MiB)
    assert gate.over(113 * MiB) and gate.closed_once
    held[0] = 600 * MiB
    assert gate.over()
    assert not MemoryGate(None).over(10 * GiB)  # nothing known: never closed
    assert not MemoryGate(GiB, resident=lambda: None).over(10 * GiB)  # no /proc
    resident = resident_bytes()
    assert resident is not None and 10 * MiB < resident < 4 * GiB  # this process, read
