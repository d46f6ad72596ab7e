"""docs/contract.md and the code agree: commands, options, tables, columns, views."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import click

from etl.cli import cli
from etl.config import Dialect, SqlFormat
from etl.schema import TABLES
from etl.warehouse.views import view_files

REPO = Path(__file__).resolve().parents[2]
CONTRACT = (REPO / "docs" / "contract.md").read_text(encoding="utf-8")


def command_rows() -> dict[str, str]:
    """The rows of the command table (the section before the warehouse's tables)."""
    commands = CONTRACT[: CONTRACT.index("## Warehouse tables")]
    rows = re.findall(r"^\| `([a-z]+)` \| (.*?) \|", commands, re.M)
    return dict(rows)


def test_every_command_and_option_is_in_the_contract() -> None:
    rows = command_rows()
    assert set(rows) == set(cli.commands)
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Argument):
                assert f"`{param.name.upper()}`" in rows[name], (name, param.name)
                continue
            for flag in param.opts:
                if flag.startswith("--"):
                    assert f"`{flag}`" in rows[name], (name, flag)


def test_every_choice_of_a_command_is_in_the_contract() -> None:
    """The choices are read from their Literal in etl/config.py, as click's are."""
    lines = dict(re.findall(r"^\| `([a-z]+)` \| (.*)$", CONTRACT, re.M))
    for command, choice in (("views", Dialect), ("sql", SqlFormat)):
        for option in get_args(choice):
            assert re.search(rf"\b{option}\b", lines[command]), (command, option)


def test_every_table_and_column_is_in_the_contract() -> None:
    for table, columns in TABLES.items():
        names = ", ".join(name for name, _ in columns)
        assert f"`{table}({names})`" in CONTRACT, table


def test_every_view_is_in_the_contract() -> None:
    for view in view_files():
        assert f"`{view}`" in CONTRACT, view


def test_no_source_file_points_outside_the_repository() -> None:
    outside = "DESIGN" + ".md"  # the shared design note, not in this repository
    for path in [*REPO.glob("etl/**/*.py"), *REPO.glob("tests/**/*.py"), REPO / "README.md"]:
        assert outside not in path.read_text(encoding="utf-8"), path
