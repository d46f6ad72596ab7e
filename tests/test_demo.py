"""`runreport demo`: the first thing a new user runs, in an empty folder, twice."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tests.conftest import run_cli


def test_demo_in_an_empty_folder_twice(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", "demo")
    assert result.exit_code == 0, result.output
    folder = (tmp_path / "demo").resolve()
    named = {Path(p) for p in re.findall(r"(/\S+\.(?:html|duckdb))", result.output)}
    assert folder / "runs.duckdb" in named
    assert folder / "reports" / "index.html" in named
    for path in named:
        assert path.is_file(), path
    assert "runreport sql --db" in result.output
    assert (folder / "mlflow.db").is_file()
    con = duckdb.connect(str(folder / "runs.duckdb"), read_only=True)
    assert con.execute("select count(*) from runs").fetchone() == (21,)
    entity_counts = con.execute(
        "select (select count(*) from logged_models), (select count(*) from model_versions), "
        "(select count(*) from traces), (select count(*) from trace_assessments), "
        "(select count(*) from run_inputs where dataset_name = 'diabetes (train)')"
    ).fetchone()
    assert entity_counts == (2, 2, 3, 2, 1)
    assert con.execute("select name, alias, version from model_aliases").fetchall() == [
        ("diabetes-ridge", "champion", "2")
    ]
    con.close()

    again = run_cli("demo", "--dir", "demo")
    assert again.exit_code == 0, again.output
    con = duckdb.connect(str(folder / "runs.duckdb"), read_only=True)
    assert con.execute("select count(*) from runs").fetchone() == (42,)
    assert con.execute("select count(*) from experiments").fetchone() == (3,)  # + Default
    index = (folder / "reports" / "index.html").read_text()
    assert "GridSearchCV" in index
