"""`tfy-audit --help`, `--version` and each command's `--help` answer without importing dlt,
httpx, pyarrow or pendulum: the layers keep those below the commands that need them
(docs/architecture.md), and a user's first command, or a scheduler's probe, should not pay for
them. Only `--version` reads the package's metadata (importlib.metadata)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tfy_audit._cli.parser import COMMANDS

HEAVY = ("dlt", "httpx", "pyarrow", "duckdb", "pendulum")
METADATA = "importlib.metadata"

PROBE = """
import json, sys
from tfy_audit._cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], *([command, "--help"] for command in COMMANDS)],
    ids=lambda argv: " ".join(argv),
)
def test_help_and_version_import_nothing_heavy(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=(*HEAVY, METADATA)), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [METADATA] if argv == ["--version"] else []
    assert loaded == expected, f"{' '.join(argv)} imported {loaded}"
