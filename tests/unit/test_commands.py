"""The command line without a store: every command exists with help and an example, the
README's set-up commands are the ones CI runs, and a mistaken setting stops in one line
before any store or warehouse is read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import etl
from etl.cli import cli
from etl.errors import ConfigError
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["seed", "extract", "report", "email", "run", "sql", "demo", "export", "views", "alerts"]


# --- every command, with help and an example; the README's commands ------------------------


def test_every_design_command_exists() -> None:
    assert sorted(cli.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output
    assert f"runreport {name}" in result.output


def test_readme_first_screen_has_the_two_set_up_commands() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert len(lines) == 2
    demo, tests = lines
    assert demo.endswith("runreport demo")
    assert tests.endswith("python -m pytest -n 2 --dist loadfile") and "[test]" in tests
    assert readme.index(demo) < 1500, "the commands are on the first screen"
    ci = (REPO / ".ci" / "run").read_text()
    # CI runs the README's own line (found by this pattern), not a copy that could drift
    pattern = re.search(r'grep -m1 -E "(.+?)" README.md', ci)
    assert pattern is not None and re.match(pattern.group(1), tests)


def test_readme_demo_command_is_runreport_demo() -> None:
    readme = (REPO / "README.md").read_text()
    first_command = re.search(r"```bash\n(.*?)\n", readme)
    assert first_command is not None
    assert first_command.group(1).endswith("runreport demo")


# --- mistaken settings: one line, before any store or warehouse is read ------------------


def test_api_settings_are_checked_like_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--days must be between 1 and 3660, not 0"):
        etl.render_report(tmp_path / "runs.duckdb", tmp_path / "out", days=0)


@pytest.mark.parametrize(
    ("sources", "problem"),
    [
        ('[[sources]]\nname = "Lab A"\ntracking_uri = "sqlite:///a.db"\n', "lowercase letters"),
        ('[[sources]]\nname = "main"\ntracking_uri = "sqlite:///a.db"\n', "is taken"),
        (
            '[[sources]]\nname = "a"\ntracking_uri = "x"\n[[sources]]\nname = "a"\n'
            'tracking_uri = "y"\n',
            "is taken",
        ),
        ('[[sources]]\nname = "a"\n', "tracking_uri is missing"),
        ('[[sources]]\nname = "a"\ntracking_uri = "x"\nvia = "odbc"\n', "via must be"),
        ('[[sources]]\nname = "a"\nuri = "x"\n', "unknown keys ['uri']"),
        ('sources = "a"\n', "must be [[sources]] tables"),
    ],
)
def test_bad_sources_are_refused_in_one_line(tmp_path: Path, sources: str, problem: str) -> None:
    config = tmp_path / "runreport.toml"
    config.write_text(sources)
    result = run_cli("extract", "--config", str(config), "--db", str(tmp_path / "runs.duckdb"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "runreport: error:" in line]
    assert len(errors) == 1 and problem in errors[0], result.output
    assert not (tmp_path / "runs.duckdb").exists()
