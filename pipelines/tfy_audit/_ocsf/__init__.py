"""The OCSF mapping of TrueFoundry's audit events: tables of data (the CSV files here), the rule
that applies them (`mapping.py`), and the shape of an exported event (`nest.py`). No dlt: the
warehouse's view and the export both build on it."""
