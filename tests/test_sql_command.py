"""`runreport sql`: read-only ad-hoc queries against a real warehouse, as table, CSV, JSON."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import StoreFacts, run_cli, unstamped

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def warehouse(rich_store: StoreFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("sql_db") / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    return db


def sql(db: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("sql", "--db", str(db), *args)
    return result.exit_code, result.stdout, unstamped(result.stderr)


def fingerprint(path: Path) -> tuple[str, int, float]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size, path.stat().st_mtime


def test_csv_output(warehouse: Path, rich_store: StoreFacts) -> None:
    beta = rich_store.experiment_ids["beta"]
    code, out, _ = sql(
        warehouse,
        "--format",
        "csv",
        f"select run_name, status from runs where experiment_id = '{beta}' order by run_name",
    )
    assert code == 0
    assert out == (
        "run_name,status\n"
        "child,FINISHED\n"
        "failed,FAILED\n"
        "grandchild,FINISHED\n"
        "root,FINISHED\n"
        "running,RUNNING\n"
        "日本語 run ✓,FINISHED\n"
    )


def test_csv_is_the_default_in_a_pipe_and_quotes_what_needs_it(warehouse: Path) -> None:
    code, out, _ = sql(
        warehouse,
        "select 'a,b' as text, 'say \"hi\"' as quoted, null as nothing, 1.5 as x, "
        "true as flag, date '2024-03-01' as day, 'nan'::double as n, 'inf'::double as i",
    )
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["text", "quoted", "nothing", "x", "flag", "day", "n", "i"],
        ["a,b", 'say "hi"', "", "1.5", "true", "2024-03-01", "NaN", "Infinity"],
    ]


def test_json_output(warehouse: Path, rich_store: StoreFacts) -> None:
    odd = rich_store.run_ids["odd_metrics"]
    code, out, _ = sql(
        warehouse,
        "--format",
        "json",
        f"select key, value from metrics where run_id = '{odd}' order by key",
    )
    assert code == 0
    # MLflow's SQLite store keeps ±inf as ±1.7976931348623157e308, which reads as ±inf by
    # the one rule of etl/values.py (as in the report's CSVs); NaN becomes "NaN"
    assert json.loads(out) == [
        {"key": "nan", "value": "NaN"},
        {"key": "ninf", "value": "-Infinity"},
        {"key": "pinf", "value": "Infinity"},
    ]


def test_json_values(warehouse: Path, rich_store: StoreFacts) -> None:
    plain = rich_store.run_ids["plain"]
    unicode_run = rich_store.run_ids["unicode"]
    code, out, _ = sql(
        warehouse,
        "--format",
        "json",
        "select run_id, run_name, start_time, end_time - end_time as zero, "
        "'-inf'::double as minus, 'inf'::double as plus, 'nan'::double as nan, "
        "null as nothing, [1, 2] as list, 2.50::decimal(4, 2) as dec, "
        f"date '2024-03-01' as day from runs where run_id in ('{plain}', '{unicode_run}') "
        "order by run_name",
    )
    assert code == 0
    parsed = json.loads(out)
    client = MlflowClient(rich_store.uri)
    starts = {
        run_id: dt.datetime.fromtimestamp(client.get_run(run_id).info.start_time / 1000, UTC)
        for run_id in (plain, unicode_run)
    }
    assert [row["run_name"] for row in parsed] == ["plain", "日本語 run ✓"]
    for row in parsed:
        assert dt.datetime.fromisoformat(row["start_time"]) == starts[row["run_id"]]
        assert row["start_time"].endswith("+00:00")
        assert {k: v for k, v in row.items() if k not in ("run_id", "run_name", "start_time")} == {
            "zero": "0:00:00",
            "minus": "-Infinity",
            "plus": "Infinity",
            "nan": "NaN",
            "nothing": None,
            "list": [1, 2],
            "dec": 2.5,
            "day": "2024-03-01",
        }
    assert "日本語 run ✓" in out  # not \u-escaped


def test_json_of_no_rows_is_an_empty_list(warehouse: Path) -> None:
    code, out, _ = sql(warehouse, "--format", "json", "select * from runs where false")
    assert (code, json.loads(out)) == (0, [])


def test_table_output(warehouse: Path) -> None:
    code, out, _ = sql(
        warehouse,
        "--format",
        "table",
        "select run_name, status from runs where run_name in ('root', '日本語 run ✓') "
        "union all select '[red]not markup[/red]', null order by 1",
    )
    assert code == 0
    lines = out.splitlines()
    assert "run_name" in lines[1] and "status" in lines[1]
    body = "\n".join(lines[3:])
    assert "[red]not markup[/red]" in body  # rich markup in a value is printed as is
    assert "NULL" in body
    assert "日本語 run ✓" in body and "FINISHED" in body


def test_long_results_stream_in_csv_and_json_and_are_cut_in_a_table(warehouse: Path) -> None:
    query = "select range as n from range(25000)"
    code, out, _ = sql(warehouse, "--format", "csv", query)
    lines = out.splitlines()
    assert (code, len(lines), lines[0], lines[-1]) == (0, 25001, "n", "24999")
    code, out, _ = sql(warehouse, "--format", "json", query)
    assert json.loads(out) == [{"n": n} for n in range(25000)]
    code, out, err = sql(warehouse, "--format", "table", query)
    assert code == 0
    assert "│ 999 " in out and "│ 1000 " not in out
    assert "showing the first 1,000 rows" in err


def test_views_are_queryable(warehouse: Path, rich_store: StoreFacts) -> None:
    code, out, _ = sql(
        warehouse,
        "--format",
        "json",
        "select run_name, depth, root_run_id from run_overview where is_nested_child "
        "order by depth",
    )
    assert code == 0
    root = rich_store.run_ids["root"]
    assert json.loads(out) == [
        {"run_name": "child", "depth": 1, "root_run_id": root},
        {"run_name": "grandchild", "depth": 2, "root_run_id": root},
    ]


def test_schema_lists_each_table_and_view_with_what_it_holds(warehouse: Path) -> None:
    code, out, _ = sql(warehouse, "--schema", "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["name", "kind", "holds"]
    holds = {(name, kind): sentence for name, kind, sentence in rows[1:]}
    assert len(holds) == len(rows) - 1  # one line each
    assert holds[("metrics", "table")] == "the latest value of each key, as search_runs returns it"
    assert holds[("active_runs", "view")] == "active runs of active experiments"
    assert holds[("runreport_settings", "table")] == "settings the views read"
    assert ("runs_wide", "view") in holds
    assert all(holds.values()), [name for name, sentence in holds.items() if not sentence]
    kinds = [kind for _, kind, _ in rows[1:]]
    assert kinds == sorted(kinds)  # the tables, then the views


def test_schema_name_describes_one_table_or_view(warehouse: Path) -> None:
    code, out, _ = sql(warehouse, "--schema", "--format", "csv", "runs")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["column_name", "data_type"],
        ["run_id", "VARCHAR"], ["experiment_id", "VARCHAR"], ["run_name", "VARCHAR"],
        ["status", "VARCHAR"], ["user_id", "VARCHAR"],
        ["start_time", "TIMESTAMP WITH TIME ZONE"], ["end_time", "TIMESTAMP WITH TIME ZONE"],
        ["lifecycle_stage", "VARCHAR"], ["artifact_uri", "VARCHAR"],
    ]  # fmt: skip
    code, out, _ = sql(warehouse, "--schema", "--format", "table", "Runs_Per_Day")
    assert code == 0
    first, *table = out.splitlines()
    assert (
        first == "runs_per_day (view): active runs started each day (in report.timezone), "
        "by status, per MLflow workspace"
    )
    assert "start_date" in "\n".join(table) and "scheduled" in "\n".join(table)


def test_schema_as_json(warehouse: Path) -> None:
    code, out, _ = sql(warehouse, "--schema", "--format", "json", "run_overview")
    assert code == 0
    assert {"column_name": "root_run_id", "data_type": "VARCHAR"} in json.loads(out)


def test_schema_of_an_unknown_name_is_a_usage_error(warehouse: Path) -> None:
    code, out, err = sql(warehouse, "--schema", "leaderbord")
    assert code == 2 and out == ""
    assert err.strip() == (
        "runreport: error: the warehouse has no table or view 'leaderbord'. "
        "Did you mean leaderboard?"
    )


@pytest.mark.pure
def test_missing_warehouse_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "runs.duckdb"
    code, out, err = sql(missing, "select 1")
    assert code == 2
    assert out == ""
    assert str(missing) in err and "runreport extract" in err


@pytest.mark.pure
def test_a_file_that_is_no_warehouse_is_a_config_error(tmp_path: Path) -> None:
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("hello\n")
    code, _, err = sql(not_duckdb, "select 1")
    assert code == 2
    assert f"cannot open the warehouse {not_duckdb}" in err
    assert not_duckdb.read_text() == "hello\n"


def test_no_query_is_a_usage_error(warehouse: Path) -> None:
    code, _, err = sql(warehouse)
    assert code == 2 and "no query given" in err


def test_a_bad_query_fails_with_duckdbs_message(warehouse: Path) -> None:
    code, out, err = sql(warehouse, "select * from no_such_table")
    assert code == 1
    assert out == ""
    assert err.startswith("runreport: error: query failed: Catalog Error: Table with name")
    assert "no_such_table does not exist" in err
    assert len(err.strip().splitlines()) == 1


def test_an_error_while_fetching_fails_too(warehouse: Path) -> None:
    code, _, err = sql(warehouse, "select cast('x' || range as integer) from range(3)")
    assert code == 1
    assert "Conversion Error" in err


@pytest.mark.parametrize(
    "statement",
    [
        "insert into runs (run_id) values ('intruder')",
        "update runs set status = 'FAILED'",
        "delete from runs",
        "drop table runs",
        "drop view run_overview",
        "create table intruder (a int)",
        "create or replace view runs_per_day as select 1 as x",
        "alter table runs add column intruder int",
        "select 1; drop table metrics",
        "attach '{tmp}/other.duckdb' as other",
        "attach '{db}' as again (read_only false); create table again.intruder (a int)",
        "copy runs to '{tmp}/stolen.csv'",
        "copy runs from '{tmp}/stolen.csv'",
        "set enable_external_access = true",
        "set lock_configuration = false",
        "install httpfs",
    ],
)
def test_no_query_can_change_the_warehouse(warehouse: Path, tmp_path: Path, statement: str) -> None:
    before = fingerprint(warehouse)
    listing = sorted(p.name for p in warehouse.parent.iterdir())
    code, out, err = sql(warehouse, statement.format(tmp=tmp_path, db=warehouse))
    assert code == 1, (out, err)
    assert err.startswith("runreport: error: query failed:")
    assert fingerprint(warehouse) == before
    assert sorted(p.name for p in warehouse.parent.iterdir()) == listing
    assert list(tmp_path.iterdir()) == []
    code, out, _ = sql(warehouse, "select count(*) as n from runs where run_id = 'intruder'")
    assert (code, out) == (0, "n\n0\n")


def test_a_warehouse_open_for_writing_elsewhere_is_a_clear_error(warehouse: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "time.sleep(60)", str(warehouse)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        code, _, err = sql(warehouse, "select 1")
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert f"the warehouse {warehouse} is open for writing in another program" in err


def test_a_timeout_stops_the_query(warehouse: Path) -> None:
    started = time.monotonic()
    code, out, err = sql(
        warehouse,
        "--timeout",
        "0.5",
        "select sum(a.range * b.range) from range(200000) a, range(200000) b",
    )
    assert code == 1 and out == ""
    assert err.strip() == (
        "runreport: error: query stopped after 0.5 s (--timeout). "
        "Narrow it (a where clause, a limit) or give it a longer --timeout"
    )
    assert time.monotonic() - started < 20


def test_escape_sequences_never_reach_the_terminal(warehouse: Path) -> None:
    code, out, _ = sql(
        warehouse, "--format", "table", "select chr(27) || '[2J' || 'wiped' as \"x\x1b[31m\""
    )
    assert code == 0
    assert "\x1b" not in out
    assert "\\x1b[2Jwiped" in out and "x\\x1b[31m" in out


def test_table_output_never_breaks_run_ids(warehouse: Path, rich_store: StoreFacts) -> None:
    plain = rich_store.run_ids["plain"]
    code, out, _ = sql(
        warehouse,
        "--format",
        "table",
        f"select run_id, 123456789012345 as n, repeat('long text ', 30) as note "
        f"from runs where run_id = '{plain}'",
    )
    assert code == 0
    assert plain in out and "123456789012345" in out


def test_sql_never_writes_beside_the_warehouse(warehouse: Path) -> None:
    spill = warehouse.with_name(warehouse.name + ".tmp")
    spill.mkdir(exist_ok=True)
    try:
        code, _, _ = sql(
            warehouse, "--format", "csv", "select count(*) from (select range from range(3000000) "
            "order by random())",
        )  # fmt: skip
        assert code == 0
        assert list(spill.iterdir()) == []
    finally:
        spill.rmdir()
