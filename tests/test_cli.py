"""`python -m etl` is the same command line as `runreport`, in a process of its own. The
command line's pure checks (every command of docs/contract.md exists with help and an
example, the README's set-up commands) are in tests/unit/test_commands.py."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.test_commands import COMMANDS


def test_python_dash_m_etl_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etl", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in result.stdout
