"""Load a TrueFoundry control plane's audit logs into DuckDB with the plain dlt source, the way
`dlt init` sets a pipeline up: `python truefoundry_audit_pipeline.py`.

Host and API key come from dlt's config (`.dlt/config.toml`: `[sources.truefoundry_audit]`
`host = "https://..."`; `.dlt/secrets.toml`: the same section, `api_key = "..."`) or from
`TFY_HOST` / `TFY_API_KEY`. Each run loads, in one load, everything since the source's
high-water mark (minus its lookback).

This pipeline has its own name and keeps its working directory in `.truefoundry_audit_pipeline/`
beside its DuckDB file, so it never shares state with `tfy-audit sync` (pipeline `tfy_audit`,
whose working directory sits beside its own database file). For chunked commits, crash
recovery, the lock and the views, use `tfy-audit sync` or `tfy_audit.run_sync` instead.
"""

from __future__ import annotations

import dlt
from tfy_audit import truefoundry_audit

PIPELINE_NAME = "truefoundry_audit_pipeline"
DATASET_NAME = "truefoundry_audit"
# not named after the dataset: dlt's SQL is ambiguous when the file and the dataset share a name
DUCKDB_FILE = "truefoundry_audit_pipeline.duckdb"
PIPELINES_DIR = ".truefoundry_audit_pipeline"


def make_pipeline(
    duckdb_file: str = DUCKDB_FILE, pipelines_dir: str = PIPELINES_DIR
) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=dlt.destinations.duckdb(duckdb_file),
        dataset_name=DATASET_NAME,
        pipelines_dir=pipelines_dir,
    )


def load_audit_logs() -> None:
    """Every audit event not loaded yet."""
    pipeline = make_pipeline()
    load_info = pipeline.run(truefoundry_audit(), loader_file_format="parquet")
    print(load_info)


def load_secret_events() -> None:
    """Only the events about secrets: each filter set keeps its own high-water mark."""
    pipeline = make_pipeline()
    source = truefoundry_audit(filters={"resource_type": "secret"})
    load_info = pipeline.run(source, loader_file_format="parquet")
    print(load_info)


if __name__ == "__main__":
    load_audit_logs()
