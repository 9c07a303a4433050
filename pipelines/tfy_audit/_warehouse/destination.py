"""The destination: making it and the pipeline that loads it, and turning its failures into
ours. What differs by destination kind is its adapter's (adapter.py); what is read back from
it is in readback.py; keeping a DuckDB file open across a sync's steps in database.py."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dlt

from tfy_audit._compat.dlt import (
    Destination,
    configuration_error,
    explain_destination_failure,
    memoize_configuration,
)
from tfy_audit._core.errors import (
    DestinationError,
    TfyAuditError,
    UsageError,
    exception_chain,
    one_line,
)
from tfy_audit._core.options import DestinationOptions
from tfy_audit._warehouse.adapter import warehouse_for


def make_destination(
    target: DestinationOptions, *, read_only: bool = False
) -> Destination[Any, Any]:
    """The destination of `target`, made by its kind's adapter. A DuckDB file is refused in one
    line when the file system will not let it be written (`write_refusal`), unless
    `read_only`: then it is opened read-only."""
    return memoize_configuration(
        warehouse_for(target).make_destination(target, read_only=read_only)
    )


def write_refusal(target: DestinationOptions) -> str | None:
    """Why the file system will not let the target (a DuckDB `--db`) be written; None when it
    will, or for a destination that is not a local database file."""
    return warehouse_for(target).write_refusal(target)


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
    return warehouse_for(target).pipelines_dir(target)


def make_pipeline(target: DestinationOptions) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=target.pipeline_name,
        pipelines_dir=pipelines_dir(target),
        destination=make_destination(target),
        dataset_name=target.dataset,
    )


def loader_file_format(target: DestinationOptions) -> str | None:
    """The file format dlt loads the Arrow tables of `target` in (its adapter's); None for
    dlt's preferred one."""
    return warehouse_for(target).loader_file_format


def load_workers(target: DestinationOptions) -> int | None:
    """How many load jobs dlt runs at once into `target`; None for dlt's default (one for a
    DuckDB file: duckdb_file.DuckDBFile says why)."""
    return warehouse_for(target).load_workers


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
        reason = explain_destination_failure(exc) or one_line(exc)
        raise DestinationError(f"{what} failed: {reason}") from exc


_E = TypeVar("_E", bound=BaseException)


def _in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of `kind` in `exc`'s chain of causes and contexts."""
    return next((c for c in exception_chain(exc) if isinstance(c, kind)), None)
