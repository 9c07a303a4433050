"""`tfy-audit export`: the warehouse's events written out for other tools; OCSF Parquet in
Security Lake's custom-source layout (`ocsf.py`), to a folder or a bucket (`store.py`),
incrementally by UTC day (`mark.py`)."""

from tfy_audit._export.ocsf import ExportSummary, export_ocsf
from tfy_audit._export.options import ExportOptions

__all__ = ["ExportOptions", "ExportSummary", "export_ocsf"]
