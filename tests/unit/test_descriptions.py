"""`runreport sql --schema` says what each table and view holds in the contract's words:
etl/warehouse/descriptions.py and docs/contract.md name the same tables and views with the
same sentences, and every table and view a warehouse holds has one."""

from __future__ import annotations

import re
from pathlib import Path

from etl.schema import TABLES as TABLE_COLUMNS
from etl.warehouse.build import ALERT_TABLES
from etl.warehouse.descriptions import SETTINGS_SENTENCE, TABLES, VIEWS, description
from etl.warehouse.settings import SETTINGS_TABLES
from etl.warehouse.views import view_files

CONTRACT = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text("utf-8")
BULLET = re.compile(r"^- `([a-z_]+)(?:\([^)]*\))?`: (.+)$", re.M)
HINT = "a table or view added or reworded in one needs the same sentence in the other"


def contract_section(start: str, end: str) -> str:
    return CONTRACT[CONTRACT.index(start) : CONTRACT.index(end)]


def test_the_tables_read_as_the_contract_says() -> None:
    section = contract_section("## Warehouse tables", "### Several sources")
    assert dict(BULLET.findall(section)) == TABLES, HINT


def test_the_views_read_as_the_contract_says() -> None:
    section = contract_section("## Views", "## report.json")
    assert dict(BULLET.findall(section)) == VIEWS, HINT


def test_every_table_and_view_has_a_sentence() -> None:
    tables = {*TABLE_COLUMNS, "extract_log", "model_alias_history", "runreport_meta"}
    tables |= set(ALERT_TABLES)
    assert set(TABLES) == tables
    assert set(VIEWS) == {*view_files(), "runs_wide", "runs_wide_all"}
    settings_line = next(line for line in CONTRACT.splitlines() if SETTINGS_SENTENCE in line)
    for table in SETTINGS_TABLES:
        assert f"`{table}`" in settings_line, table
        assert description(table) == SETTINGS_SENTENCE


def test_a_sentence_reads_without_markdown() -> None:
    assert description("metrics") == "the latest value of each key, as search_runs returns it"
    assert description("no_such_view") == ""
