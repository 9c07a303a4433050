"""The `tfy-audit` command: arguments, output, exit codes.

Private: the public API is `tfy_audit.__all__`.
"""
