"""The `tfy-audit` command: arguments, output, exit codes.

Private: the public API is `tfy_audit.__all__`.
"""

# First, before any module that registers an exit handler: the process's prompt exit must be
# the last exit handler to run (see process.py).
from tfy_audit._cli import process as process
