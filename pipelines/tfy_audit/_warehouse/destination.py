"""The destination: making it and the pipeline that loads it, what it supports, and turning its
failures into ours. What is read back from it is in warehouse.py; keeping a DuckDB file open
across a sync's steps in database.py."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import dlt

from tfy_audit._compat.dlt import (
    Destination,
    configuration_error,
    destination_from_reference,
    duckdb_destination,
    explain_destination_failure,
)
from tfy_audit._core.errors import DestinationError, TfyAuditError, UsageError
from tfy_audit._core.memory import duckdb_memory_limit
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import (
    AUDIT_LOGS_TABLE,
    METADATA_TABLE,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)

# DuckDB caches up to 80% of RAM by default, and its load is what peaks a sync's memory: one
# thread and a small cache keep that peak low at no cost in load time (dlt loads the tables as
# parallel jobs anyway); `make bench` and docs/performance.md have the figures. Larger joins (a
# full re-merge) spill to the database's temp directory instead of failing. A commit that runs
# out of it fails its load job, which dlt retries; a retried copy job deletes what its failed
# attempt wrote first (RETRY_KEYS), so the limit costs a retry, never a doubled row. A row
# larger than the limit allows (one event of many MB) fails the first attempt of its job: the
# retry runs with the limit the process's memory allows (memory.duckdb_memory_limit).
DUCKDB_MEMORY_LIMIT = "80MB"
DUCKDB_THREADS = 1
# load jobs run at once into a DuckDB file (load_workers says why)
DUCKDB_LOAD_WORKERS = 1

# What identifies a row of each table within one load job's file: a retried DuckDB copy job
# deletes the rows of its file's keys before copying it again (see _dlt_compat.py), so a
# failed attempt that had written its rows anyway leaves none twice.
RETRY_KEYS: dict[str, tuple[str, ...]] = {
    AUDIT_LOGS_TABLE: ("id",),
    METADATA_TABLE: ("audit_log_id", "path"),
    SUBJECTS_TABLE: ("subject_id",),
    SYNC_WINDOWS_TABLE: ("sync_id", "filter_key", "window_start", "window_end"),
}


def make_destination(
    target: DestinationOptions, *, read_only: bool = False
) -> Destination[Any, Any]:
    """The destination of `target`. A DuckDB file is refused in one line when the file system
    will not let it be written (`write_refusal`), unless `read_only`: then it is opened
    read-only."""
    name = target.destination
    if name == "duckdb" and not read_only:
        folder = Path(target.db).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create {folder} for --db ({exc.strerror}); pass a --db in a writable "
                "directory"
            ) from exc
        refusal = write_refusal(target)
        if refusal:
            raise UsageError(
                f"cannot write to the DuckDB file {target.db}: {refusal}; make it writable "
                "(chmod u+w, or chattr -i where it is immutable) or pass another --db"
            )
    try:
        if name == "duckdb":
            return duckdb_destination(
                str(Path(target.db).expanduser()),
                memory_limit=DUCKDB_MEMORY_LIMIT,
                retry_memory_limit=duckdb_memory_limit(),
                threads=DUCKDB_THREADS,
                retry_keys=RETRY_KEYS,
                read_only=read_only,
            )
        destination = destination_from_reference(name)
    except Exception as exc:
        raise UsageError(
            f"unknown destination {name!r}: use duckdb (default), postgres, filesystem, bigquery, "
            "snowflake, motherduck, clickhouse or another dlt destination name"
        ) from exc
    if destination is None:
        raise UsageError(f"unknown destination {name!r}")
    return destination


def write_refusal(target: DestinationOptions) -> str | None:
    """Why the file system will not let a DuckDB `--db` be written: the file (read-only,
    immutable) or its folder (where DuckDB writes its `.wal`); None when it will, or for
    another destination. Tried, not judged from mode bits, which do not stop root."""
    if target.destination != "duckdb":
        return None
    db = Path(target.db).expanduser()
    if db.exists():
        try:
            os.close(os.open(db, os.O_RDWR | os.O_CLOEXEC))
        except OSError as exc:
            return f"the file refuses writes ({exc.strerror})"
    folder = db.resolve().parent
    if folder.is_dir():
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            return f"its folder {folder} refuses writes ({exc.strerror})"
    return None


def reading_pipeline(target: DestinationOptions) -> dlt.Pipeline:
    """A pipeline for a command that only reads: `make_pipeline`'s, unless the file system
    will not let a DuckDB `--db` be written; then the file is opened read-only and dlt's
    working dir is a temporary one (its usual place may refuse writes as well), removed with
    the pipeline or at exit."""
    if write_refusal(target) is None:
        return make_pipeline(target)
    workdir = tempfile.mkdtemp(prefix="tfy-audit-read-")
    pipeline = dlt.pipeline(
        pipeline_name=target.pipeline_name,
        pipelines_dir=workdir,
        destination=make_destination(target, read_only=True),
        dataset_name=target.dataset,
    )
    weakref.finalize(pipeline, shutil.rmtree, workdir, True)
    return pipeline


@contextmanager
def restored_pipeline(target: DestinationOptions, *, read_only: bool = False) -> Iterator[Any]:
    """A pipeline on the target whose schema and state come from the destination alone, working
    in a temporary directory removed after it: what `status` and `sql` read from, touching
    nothing of the syncs' own working dir. A dataset no sync has loaded is a usage error."""
    with tempfile.TemporaryDirectory(prefix="tfy-audit-read-") as workdir:
        pipeline = dlt.pipeline(
            pipeline_name=target.pipeline_name,
            pipelines_dir=workdir,
            destination=make_destination(target, read_only=read_only),
            dataset_name=target.dataset,
        )
        with step("reading the sync state from the destination"):
            pipeline.sync_destination()
        if not pipeline.default_schema_name:
            raise UsageError(
                f"no sync has loaded dataset {target.dataset!r} of pipeline "
                f"{target.pipeline_name!r} yet; run `tfy-audit sync` first, or pass the "
                "--destination, --dataset and --pipeline-name of your syncs"
            )
        yield pipeline


def pipelines_dir(target: DestinationOptions) -> str:
    """dlt's working dir: given, or next to what the user named, so two destinations never
    share local state (dlt's one global dir would make a sync to PostgreSQL and one to the
    filesystem of the same pipeline name drop each other's state): beside a DuckDB file, else
    `./.tfy-audit/pipelines/<destination>-<dataset>` in the current folder."""
    if target.pipelines_dir:
        return target.pipelines_dir
    if target.destination == "duckdb":
        db = Path(target.db).expanduser()
        return str(db.with_name(f".{db.name}.pipelines"))
    return str(Path(WORK_DIR, "pipelines", _safe(f"{target.destination}-{target.dataset}")))


# The working dirs of destinations other than DuckDB, in the folder a command runs from.
WORK_DIR = ".tfy-audit"


def _safe(name: str) -> str:
    """A folder name of a destination reference and a dataset name (letters, digits, `._-`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"


def make_pipeline(target: DestinationOptions) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=target.pipeline_name,
        pipelines_dir=pipelines_dir(target),
        destination=make_destination(target),
        dataset_name=target.dataset,
    )


def loader_file_format(target: DestinationOptions) -> str | None:
    """Arrow tables go as Parquet where the destination takes it. PostgreSQL gets INSERTs:
    dlt's CSV `COPY` for it turns every empty string into NULL, and `""` is a value the
    service sends (tenant-level events have `clusterId: ""`)."""
    if target.destination in ("duckdb", "filesystem", "motherduck"):
        return "parquet"
    if target.destination == "postgres":
        return "insert_values"
    return None


def load_workers(target: DestinationOptions) -> int | None:
    """How many load jobs dlt runs at once into `target`; None for dlt's default.

    A DuckDB file is loaded one job at a time. dlt copies a package's tables side by side, and
    with rows of many MB (pages of large manifests) each job holds its file's rows while DuckDB
    cannot checkpoint what the others committed as long as any of them is in a transaction:
    its memory then grows with every job until the package is loaded, and took the process
    past the 1 GiB the README asks for. DuckDB writes with one thread here (DUCKDB_THREADS), so
    jobs side by side mostly wait on each other anyway; `make bench` showed no cost
    (docs/performance.md has the figures). `LOAD__WORKERS` still sets another number."""
    if target.destination == "duckdb":
        return DUCKDB_LOAD_WORKERS
    return None


def supports_merge(pipeline: dlt.Pipeline) -> bool:
    """The filesystem destination (without a table format) can only append."""
    return pipeline.destination is not None and pipeline.destination.destination_name != (
        "filesystem"
    )


# Destinations whose text cannot hold U+0000 (PostgreSQL's text and jsonb; Redshift is
# PostgreSQL's kin): nul.py replaces it before their rows are written.
_NO_NUL: Final = frozenset({"postgres", "redshift"})


def holds_nul(pipeline: dlt.Pipeline) -> bool:
    """Whether the destination stores U+0000 in text as it is (DuckDB and Parquet do)."""
    return pipeline.destination is None or pipeline.destination.destination_name not in _NO_NUL


def is_duckdb(pipeline: dlt.Pipeline) -> bool:
    return pipeline.destination is not None and pipeline.destination.destination_name == "duckdb"


@contextmanager
def step(what: str) -> Iterator[None]:
    """Turn dlt's wrapped failures into our own, naming the step."""
    try:
        yield
    except TfyAuditError:
        raise
    except Exception as exc:
        # dlt wraps a Ctrl-C (or the CLI's SIGTERM) raised inside its extract, normalize or load
        # in its own exception: raised again, the run ends as interrupted, not as a failed load
        interrupt = _in_chain(exc, KeyboardInterrupt)
        if interrupt is not None:
            raise interrupt from None
        cause = _in_chain(exc, TfyAuditError) or configuration_error(exc)
        if cause is not None:
            raise cause from exc
        reason = explain_destination_failure(exc) or _one_line(exc)
        raise DestinationError(f"{what} failed: {reason}") from exc


_E = TypeVar("_E", bound=BaseException)


def _in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of `kind` in `exc`'s chain of causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500]
