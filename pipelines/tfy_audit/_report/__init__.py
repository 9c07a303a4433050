"""The offline HTML report.

Private: the public API is `tfy_audit.__all__`.
"""
