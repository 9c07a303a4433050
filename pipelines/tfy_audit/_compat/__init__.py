"""Every use of a dependency's internals, reached through named functions.

Private: the public API is `tfy_audit.__all__`.
"""
