"""The SELECTs the report runs, one per file, read by `tfy_audit._report.queries`."""
