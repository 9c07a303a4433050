"""Talking to the service: HTTP, paging, planning and decoding pages into rows. No dlt.

Private: the public API is `tfy_audit.__all__`.
"""
