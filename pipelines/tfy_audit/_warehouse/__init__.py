"""The destination: making it, reading it back, its views and run records.

Private: the public API is `tfy_audit.__all__`.
"""
