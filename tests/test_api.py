"""The Python API: the README's example runs as written, and gives what the CLI gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import etl
from tests.conftest import build_rich_store, run_cli
from tests.test_incremental import table_contents

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has a ```python block under '## Python API'"
    return match.group(1)


def test_the_readme_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_rich_store(tmp_path)  # sqlite:///mlflow.db in the working directory
    exec(compile(readme_python_example(), "README.md", "exec"), {})
    assert (tmp_path / "runs.duckdb").is_file()
    assert (tmp_path / "reports" / "index.html").is_file()
    assert capsys.readouterr().out.strip(), "the example prints what it read"


def test_the_api_builds_the_warehouse_the_cli_builds(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    summary = etl.extract_warehouse(facts.uri, tmp_path / "api.duckdb")
    assert (summary.mode, summary.runs, summary.experiments) == ("full", 10, 4)
    assert run_cli("extract", "--tracking-uri", facts.uri, "--db", "cli.duckdb").exit_code == 0
    assert table_contents(tmp_path / "api.duckdb") == table_contents(tmp_path / "cli.duckdb")
    con = etl.connect(tmp_path / "api.duckdb", timezone="Asia/Tokyo")
    try:
        assert con.execute("select timezone from runreport_settings").fetchone() == ("Asia/Tokyo",)
        with pytest.raises(Exception, match="read-only"):
            con.execute("delete from runs")
    finally:
        con.close()
