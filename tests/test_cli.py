"""The command line as a contract: every command of docs/contract.md exists, has help with an
example, and the README's two set-up commands are the ones CI and users run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from etl.cli import cli
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["seed", "extract", "report", "email", "run", "sql", "demo", "export", "views"]


def test_every_design_command_exists() -> None:
    assert sorted(cli.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"runreport {name}" in result.output


def test_python_dash_m_etl_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "etl", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in result.stdout


def test_readme_first_screen_has_the_two_set_up_commands() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert len(lines) == 2
    demo, tests = lines
    assert demo.endswith("runreport demo")
    assert tests.endswith("python -m pytest") and "[test]" in tests
    assert readme.index(demo) < 1500, "the commands are on the first screen"
    ci = (REPO / ".ci" / "run").read_text()
    # CI runs the README's own line (found by this pattern), not a copy that could drift
    pattern = re.search(r'grep -m1 -E "(.+?)" README.md', ci)
    assert pattern is not None and re.match(pattern.group(1), tests)
