"""A run: planning, loading, recovery, the lock, verify and publish.

Private: the public API is `tfy_audit.__all__`.
"""
