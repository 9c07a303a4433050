"""`tfy-audit export`: the warehouse's events written out for other tools; OCSF Parquet in
Security Lake's custom-source layout (`ocsf.py`: `export_ocsf`), to a folder or a bucket
(`store.py`), incrementally by UTC day (`mark.py`), as `options.py` asks. Nothing is imported
here, so the command's `--help` (which reads `options.py`) stays free of dlt and pyarrow."""
