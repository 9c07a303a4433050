"""The dlt source: its resource, the extract and the source's state.

Private: the public API is `tfy_audit.__all__`.
"""
