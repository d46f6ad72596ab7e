"""Issue #26: the warehouse in the shape of Databricks' MLflow system tables.

The views `experiments_latest`, `runs_latest` and `run_metrics_history` have the column
names and types of `system.mlflow.*` as Databricks documents them, and the sample queries
of Databricks' system-tables page run on DuckDB and on Spark (over `runreport export`'s
Parquet, with the views of `runreport views --dialect spark --parquet`) with equal,
non-empty results. The query texts are Databricks' own; the only change is the table
qualifier `system.mlflow.`, which names Databricks' catalog and schema (neither engine
here has a catalog named `system`). On DuckDB the Databricks SQL is read by sqlglot
(`TIMESTAMPDIFF` and `:name` parameters are not DuckDB's), with TIMESTAMPDIFF written as
DuckDB's `date_sub` (whole units elapsed, as Databricks counts them; sqlglot's `date_diff`
counts unit boundaries crossed). Spark runs the text as it is, with `:name` parameters.

Also here: Spark's counterparts of runs_wide and runs_wide_all
(etl.warehouse.dialects.spark_wide_statements) give DuckDB's rows.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from mlflow import MlflowClient
from sqlglot import exp

from etl.warehouse.dialects import (
    named_statements,
    view_statements,
)
from etl.warehouse.views import view_files
from tests.conftest import StoreFacts, run_cli
from tests.test_extract import extract
from tests.test_spark import assert_same_rows, create_in_spark, spark

__all__ = ["spark"]  # the session's Spark fixture, shared with tests/test_spark.py

QUALIFIER = "system.mlflow."

# Databricks' documented samples (docs.databricks.com/admin/system-tables/mlflow).
SUCCESS_RATIO = """
SELECT
  experiment_id,
  AVG(CASE WHEN status = 'FINISHED' THEN 1.0 ELSE 0.0 END) AS success_ratio,
  COUNT(status) AS run_count
FROM system.mlflow.runs_latest
WHERE status IS NOT NULL
GROUP BY experiment_id
ORDER BY run_count DESC
LIMIT 20;
"""
RUN_INFO = """
SELECT
  run_name,
  date(start_time) AS start_date,
  status,
  TIMESTAMPDIFF(MINUTE, start_time, end_time) AS run_length_minutes
FROM system.mlflow.runs_latest
WHERE
  experiment_id = :experiment_id
  AND run_id = :run_id
LIMIT 1
"""
RUN_AND_EXPERIMENT_INFO = """
SELECT
  runs.run_name,
  experiments.name,
  date(runs.start_time) AS start_date,
  runs.status,
  TIMESTAMPDIFF(MINUTE, runs.start_time, runs.end_time) AS run_length_minutes
FROM system.mlflow.runs_latest runs
  JOIN system.mlflow.experiments_latest experiments
    ON runs.experiment_id = experiments.experiment_id
WHERE
  runs.experiment_id = :experiment_id
  AND runs.run_id = :run_id
LIMIT 1
"""
METRIC_SUMMARY = """
SELECT
  metric_name,
  count(metric_time) AS num_data_points,
  ROUND(avg(metric_value), 1) AS avg,
  ROUND(max(metric_value), 1) AS max,
  ROUND(min(metric_value), 1) AS min,
  ROUND(PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY metric_value), 1) AS pct_25,
  ROUND(PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY metric_value), 1) AS median,
  ROUND(PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY metric_value), 1) AS pct_75
FROM
  system.mlflow.run_metrics_history
WHERE
  run_id = :run_id
GROUP BY
  metric_name, run_id
LIMIT 100
"""
# samples whose numbers are ROUND(x, 1): equal to one rounding step (assert_close_rows)
ROUNDED = {"metric_summary": 0.1}
SAMPLES = {
    "success_ratio": SUCCESS_RATIO,
    "run_info": RUN_INFO,
    "run_and_experiment_info": RUN_AND_EXPERIMENT_INFO,
    "metric_summary": METRIC_SUMMARY,
}

# Databricks' documented columns and types, in DuckDB's type names
STRING, TIMESTAMP = "VARCHAR", "TIMESTAMP WITH TIME ZONE"
COLUMNS = {
    "experiments_latest": [
        ("account_id", STRING),
        ("update_time", TIMESTAMP),
        ("delete_time", TIMESTAMP),
        ("experiment_id", STRING),
        ("workspace_id", STRING),
        ("name", STRING),
        ("create_time", TIMESTAMP),
    ],
    "runs_latest": [
        ("account_id", STRING),
        ("update_time", TIMESTAMP),
        ("delete_time", TIMESTAMP),
        ("workspace_id", STRING),
        ("run_id", STRING),
        ("experiment_id", STRING),
        ("created_by", STRING),
        ("start_time", TIMESTAMP),
        ("end_time", TIMESTAMP),
        ("run_name", STRING),
        ("status", STRING),
        ("params", "MAP(VARCHAR, VARCHAR)"),
        ("tags", "MAP(VARCHAR, VARCHAR)"),
        (
            "aggregated_metrics",
            "STRUCT(metric_name VARCHAR, latest_value DOUBLE, max_value DOUBLE, "
            "min_value DOUBLE)[]",
        ),
    ],
    "run_metrics_history": [
        ("account_id", STRING),
        ("insert_time", TIMESTAMP),
        ("record_id", STRING),
        ("workspace_id", STRING),
        ("experiment_id", STRING),
        ("run_id", STRING),
        ("metric_name", STRING),
        ("metric_time", TIMESTAMP),
        ("metric_step", "BIGINT"),
        ("metric_value", "DOUBLE"),
    ],
}


@pytest.fixture(scope="module")
def warehouse(rich_store: StoreFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rich store extracted with its metric history."""
    db = tmp_path_factory.mktemp("databricks") / "runs.duckdb"
    result = extract(rich_store.uri, db, "--metric-history")
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture()
def con(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(warehouse), read_only=True)
    connection.execute("set TimeZone = 'UTC'")
    yield connection
    connection.close()


def sample_parameters(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """A finished run with metric history and an end time, and its experiment."""
    row = con.execute(
        "select runs.run_id, runs.experiment_id from runs "
        "where end_time is not null and run_id in (select run_id from metric_history) "
        "order by run_id limit 1"
    ).fetchone()
    assert row is not None
    return {"run_id": row[0], "experiment_id": row[1]}


def unqualified(sql: str) -> str:
    assert QUALIFIER in sql
    return sql.replace(QUALIFIER, "").strip().rstrip(";")


def for_duckdb(sql: str) -> str:
    """Databricks SQL as DuckDB SQL (see the module docstring)."""

    def whole_units(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.TimestampDiff):
            unit = exp.Literal.string(node.text("unit").lower())
            return exp.Anonymous(this="date_sub", expressions=[unit, node.expression, node.this])
        return node

    tree = sqlglot.parse_one(unqualified(sql), read="databricks")
    return tree.transform(whole_units).sql("duckdb")


def duckdb_rows(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: dict[str, str]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    used = {name: value for name, value in parameters.items() if f":{name}" in sql}
    cursor = con.execute(for_duckdb(sql), used)
    return [d[0] for d in cursor.description], [tuple(row) for row in cursor.fetchall()]


# --- DuckDB alone ----------------------------------------------------------------------


@pytest.mark.parametrize("view", sorted(COLUMNS))
def test_columns_and_types_are_databricks(con: duckdb.DuckDBPyConnection, view: str) -> None:
    described = [(row[0], row[1]) for row in con.execute(f"describe {view}").fetchall()]
    assert described == COLUMNS[view]


def test_columns_without_an_oss_counterpart_are_null(con: duckdb.DuckDBPyConnection) -> None:
    for view, columns in {
        "experiments_latest": ["account_id", "workspace_id"],
        "runs_latest": ["account_id", "workspace_id", "update_time", "delete_time"],
        "run_metrics_history": ["account_id", "workspace_id", "insert_time", "record_id"],
    }.items():
        counts = ", ".join(f"count({c})" for c in columns)
        rows, *filled = con.execute(f"select count(*), {counts} from {view}").fetchone() or ()
        assert rows > 0, view
        assert filled == [0] * len(columns), view


def test_runs_latest_holds_what_mlflow_returns(
    con: duckdb.DuckDBPyConnection, rich_store: StoreFacts
) -> None:
    client = MlflowClient(rich_store.uri)
    run_id = rich_store.run_ids["plain"]
    run = client.get_run(run_id)
    row = con.execute(
        "select experiment_id, created_by, run_name, status, params, tags, aggregated_metrics "
        "from runs_latest where run_id = ?",
        [run_id],
    ).fetchone()
    assert row is not None
    experiment_id, created_by, run_name, status, params, tags, aggregated = row
    assert (experiment_id, created_by, run_name, status) == (
        run.info.experiment_id,
        run.info.user_id,
        run.info.run_name,
        run.info.status,
    )
    assert params == run.data.params
    assert tags == run.data.tags
    expected = []
    for key in sorted(run.data.metrics):
        values = [m.value for m in client.get_metric_history(run_id, key)]
        expected.append((key, run.data.metrics[key], max(values), min(values)))
    got = [
        (m["metric_name"], m["latest_value"], m["max_value"], m["min_value"]) for m in aggregated
    ]
    assert got == expected
    assert len(client.get_metric_history(run_id, "loss")) > 1  # min and max are not the latest
    total = con.execute("select count(*) from runs_latest").fetchone()
    assert total == con.execute("select count(*) from runs").fetchone()  # deleted runs too


def test_experiments_latest_dates_deletion(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "select e.lifecycle_stage, l.delete_time is not null, l.update_time = e.last_update_time "
        "from experiments e join experiments_latest l using (experiment_id)"
    ).fetchall()
    assert {(stage, deleted) for stage, deleted, _ in rows} <= {
        ("active", False),
        ("deleted", True),
    }
    assert ("deleted", True, True) in rows
    assert all(same_time for _, _, same_time in rows)


def test_run_metrics_history_holds_every_point(con: duckdb.DuckDBPyConnection) -> None:
    history = con.execute("select count(*) from metric_history").fetchone()
    assert history is not None and history[0] > 0
    assert con.execute("select count(*) from run_metrics_history").fetchone() == history


def test_run_info_sample_gives_whole_minutes(con: duckdb.DuckDBPyConnection) -> None:
    parameters = sample_parameters(con)
    start, end = con.execute(
        "select start_time, end_time from runs where run_id = ?", [parameters["run_id"]]
    ).fetchone() or (None, None)
    _, rows = duckdb_rows(con, RUN_INFO, parameters)
    assert len(rows) == 1
    assert rows[0][3] == math.floor((end - start).total_seconds() / 60)


# --- DuckDB against Spark ----------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_tables(spark: Any, warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warehouse exported, its tables and views (runs_wide ones too) in Spark."""
    lake = tmp_path_factory.mktemp("databricks-lake") / "lake"
    exported = run_cli("export", "--parquet", str(lake), "--db", str(warehouse))
    assert exported.exit_code == 0, exported.output
    # the tables and these three views only (they read tables alone): a view of sql/
    # being written elsewhere cannot break these tests
    folder = lake.parent / "sql"
    folder.mkdir()
    for name in COLUMNS:
        shutil.copyfile(view_files()[name], folder / f"{name}.sql")
    statements = view_statements("spark", folder, lake)
    names = [name for name, _ in named_statements(statements, "spark")]
    assert names[-5:] == [*sorted(COLUMNS), "runs_wide_all", "runs_wide"]
    create_in_spark(spark, statements)
    return lake


def spark_rows(spark: Any, sql: str, parameters: dict[str, str] | None = None) -> Any:
    frame = spark.sql(sql, args=parameters) if parameters else spark.sql(sql)
    arrow = frame.toArrow()
    rows = [tuple(row[c] for c in arrow.column_names) for row in arrow.to_pylist()]
    return arrow.column_names, rows


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_sample_query_gives_the_same_rows_on_both(
    spark: Any, spark_tables: Path, con: duckdb.DuckDBPyConnection, sample: str
) -> None:
    sql = SAMPLES[sample]
    parameters = sample_parameters(con)
    duck_columns, duck = duckdb_rows(con, sql, parameters)
    used = {name: value for name, value in parameters.items() if f":{name}" in sql}
    spark_columns, got = spark_rows(spark, unqualified(sql), used)
    assert duck, f"{sample}: no rows, nothing compared"
    assert spark_columns == duck_columns
    if sample in ROUNDED:
        assert_close_rows(duck, got, sample)
    else:
        assert_same_rows(at_spark_scale(duck, got), got, sample)


def assert_close_rows(duck: list[tuple[Any, ...]], got: list[tuple[Any, ...]], sample: str) -> None:
    """ROUND(x, 1) of a value that is a tie in decimal (0.35) may differ by 0.1: Spark rounds
    the double's shortest decimal text half up, DuckDB the double itself (0.35 is
    0.34999999999999998 or 0.35000000000000003 after each engine's interpolation)."""
    assert len(duck) == len(got), sample
    tolerance = ROUNDED[sample] + 1e-9
    for want, have in zip(sorted(duck, key=str), sorted(got, key=str), strict=True):
        for a, b in zip(want, have, strict=True):
            if isinstance(a, float) and isinstance(b, float):
                both_nan = math.isnan(a) and math.isnan(b)  # a run that logged NaN
                assert both_nan or math.isclose(a, b, abs_tol=tolerance), (sample, want, have)
            else:
                assert a == b, (sample, want, have)


def at_spark_scale(
    duck: list[tuple[Any, ...]], got: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """DuckDB's rows with each column Spark returns as a DECIMAL rounded to its scale: the
    AVG of a decimal is a decimal of scale 5 in Spark (and Databricks), a DOUBLE in
    DuckDB, so 2/3 is 0.66667 there."""
    scales = {
        index: -int(value.as_tuple().exponent)
        for row in got
        for index, value in enumerate(row)
        if isinstance(value, Decimal)
    }
    return [
        tuple(
            round(value, scales[index]) if index in scales and value is not None else value
            for index, value in enumerate(row)
        )
        for row in duck
    ]


@pytest.mark.parametrize("view", ["runs_wide_all", "runs_wide"])
def test_runs_wide_in_spark_equals_duckdb(
    spark: Any, spark_tables: Path, con: duckdb.DuckDBPyConnection, view: str
) -> None:
    cursor = con.execute(f"select * from {view}")
    duck_columns = [d[0] for d in cursor.description]
    duck = [tuple(row) for row in cursor.fetchall()]
    spark_columns, got = spark_rows(spark, f"select * from {view}")
    assert {"metrics.loss", "params.alpha"} <= set(duck_columns), duck_columns
    assert spark_columns == duck_columns
    assert_same_rows(duck, got, view)


@pytest.mark.pure
@pytest.mark.parametrize("dialect", ["spark", "trino", "duckdb"])
def test_the_databricks_views_translate(tmp_path: Path, dialect: str) -> None:
    for name in COLUMNS:
        shutil.copyfile(view_files()[name], tmp_path / f"{name}.sql")
    named = named_statements(view_statements(dialect, tmp_path), dialect)
    assert [name for name, _ in named] == sorted(COLUMNS)
