"""What every layer may use: errors, redaction, settings and the options. No dlt, no httpx.

Private: the public API is `tfy_audit.__all__`.
"""
