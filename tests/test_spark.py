"""Issue #17: the views of sql/ in Spark give the rows they give in DuckDB.

One warehouse (the rich test store, with the demo's runs and the continual-learning runs
of tests/test_curves_and_history.py logged into it) is exported with
`runreport export`, its views are created in one local Spark session from `runreport views
--dialect spark --parquet DIR`, and every view's rows are compared with DuckDB's: as
multisets, floats to 1e-9, NaN equal to NaN, timestamps as UTC instants. pyspark is the
`spark` extra (and Java 17); without them these tests skip, under CI=true they fail.

The translation checks (a view sqlglot cannot translate faithfully is refused) need no
Spark and run everywhere.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from etl.errors import JobFailed
from etl.warehouse.dialects import view_statements
from etl.warehouse.views import view_files
from tests.conftest import build_rich_store, require, run_cli
from tests.templates import isolated
from tests.test_curves_and_history import log_continual_runs
from tests.test_extract import assert_one_line_error, extract

VIEWS = sorted(view_files())
SEPARATOR = ";\n\n"


def statements_of(output: str) -> list[str]:
    return [s for s in output.split(SEPARATOR) if s.strip()]


# --- the translation check, without Spark ------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize("dialect", ["spark", "trino", "duckdb"])
def test_every_view_translates(dialect: str) -> None:
    result = run_cli("views", "--dialect", dialect)
    assert result.exit_code == 0, result.output
    statements = statements_of(result.output)
    assert len(statements) == len(VIEWS)
    for statement in statements:
        sqlglot.parse_one(statement, read=dialect)  # the output is the dialect's SQL
    keyword = "VIEW" if dialect == "trino" else "TEMPORARY VIEW"
    assert all(s.lstrip().startswith(f"CREATE OR REPLACE {keyword} ") for s in statements)
    created = [s.split(" AS", 1)[0].rsplit(" ", 1)[-1] for s in statements]
    # dependency order: active_runs before the views that read it, run_overview first of its
    # readers; otherwise alphabetical
    assert created.index("active_runs") < created.index("runs_per_dataset")
    assert created.index("run_overview") < created.index("recent_runs")
    assert created.index("experiment_primary_metric") < created.index("leaderboard")


def bad_view(folder: Path, body: str, name: str = "bad") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.sql").write_text(body)
    return folder


@pytest.mark.pure
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "select run_id from metrics where isfinite(value)",
            ("view sql/bad.sql does not translate", "does not know the function isfinite"),
        ),
        (
            "select epoch_ms(start_time) as ms from runs",
            ("view sql/bad.sql does not translate", "epoch_ms()", "date_diff('millisecond'"),
        ),
        ("select from where", ("view sql/bad.sql does not translate", "sqlglot cannot read it")),
        ("select 1; select 2", ("view sql/bad.sql", "exactly one SELECT")),
    ],
)
def test_a_view_that_does_not_translate_is_refused(
    tmp_path: Path, body: str, words: tuple[str, ...]
) -> None:
    folder = bad_view(tmp_path / "sql", body)
    with pytest.raises(JobFailed) as failure:
        view_statements("spark", folder)
    line = failure.value.one_line()
    for word in words:
        assert word in line, line
    if "sqlglot cannot read" not in line and "exactly one" not in line:
        view_statements("duckdb", folder)  # DuckDB itself reads it as written


@pytest.mark.pure
def test_the_rewrites_keep_duckdbs_meaning(tmp_path: Path) -> None:
    folder = bad_view(
        tmp_path / "sql",
        "select now() as at, quantile_cont(execution_duration_ms, 0.5) as p50, "
        "percentile_cont(0.95) within group (order by execution_duration_ms) as p95, "
        "string_agg(distinct state, ', ' order by state) as states from traces",
        "latency",
    )
    (spark,) = view_statements("spark", folder)
    assert "CURRENT_TIMESTAMP()" in spark
    assert "PERCENTILE(execution_duration_ms, 0.5)" in spark
    assert "PERCENTILE(execution_duration_ms, 0.95)" in spark
    assert "APPROX" not in spark.upper()
    assert "ARRAY_JOIN(ARRAY_SORT(COLLECT_SET(state)), ', ')" in spark
    assert "LISTAGG" not in spark


@pytest.mark.pure
def test_views_that_read_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    folder = bad_view(tmp_path / "sql", "select * from second_view", "first_view")
    bad_view(folder, "select * from first_view", "second_view")
    with pytest.raises(JobFailed, match="first_view, second_view read each other in a cycle"):
        view_statements("spark", folder)


@pytest.mark.pure
def test_parquet_tables_are_for_spark_only(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("views", "--dialect", "trino", "--parquet", str(tmp_path)), 2, "spark only"
    )
    assert_one_line_error(
        run_cli("views", "--dialect", "spark", "--parquet", str(tmp_path)),
        2,
        "not a runreport Parquet export",
        "runreport export --parquet DIR",
    )


# --- the views in Spark ----------------------------------------------------------------


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for the whole run (starting one takes ~10 s)."""
    problem = None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        problem = "pyspark is not installed (pip install -e '.[spark]')"
    if problem is None and not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        problem = "no Java runtime (Spark needs Java 17)"
    require("Spark", problem)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("runreport-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        # tiny tables: planning and code generation cost more than the work
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
        # sort-merge joins: one job per query, where a broadcast join starts one per join
        .config("spark.sql.autoBroadcastJoinThreshold", "-1")
        # a view keeps the plan analyzed when it was created: a view reading views is not
        # analyzed again from its text, level by level, at each use (the views are created
        # once, in dependency order, and never change under a reader)
        .config("spark.sql.legacy.storeAnalyzedPlanForView", "true")
        # the JVM's quick compiler only: a test session is over before the optimizing
        # compiler pays back its CPU, which halves the session's CPU time
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_views(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spark_warehouse, exported, with its tables and views created in the Spark session."""
    folder = tmp_path_factory.mktemp("spark")
    db = spark_warehouse(folder)
    lake = folder / "lake"
    exported = run_cli("export", "--parquet", str(lake), "--db", str(db))
    assert exported.exit_code == 0, exported.output
    result = run_cli("views", "--dialect", "spark", "--parquet", str(lake))
    assert result.exit_code == 0, result.output
    create_in_spark(spark, statements_of(result.output))
    return db


def spark_warehouse(folder: Path) -> Path:
    """One store holding every shape the views must handle, extracted with its metric
    history: the rich store (NaN and infinite metrics, three levels of nesting, deletions,
    unicode), the demo's runs (every start_run parameter, autolog, estimators) and the
    continual-learning runs (logged without steps: metric_curves' 'order' axis). One store
    asks each view once; each Spark query costs about the same whatever its rows."""
    store = build_rich_store(folder)
    with isolated(folder):  # the demo's artifacts land in this folder
        seeded = run_cli("seed", "--tracking-uri", store.uri)
        assert seeded.exit_code == 0, seeded.output
        log_continual_runs(store.uri)
    db = folder / "runs.duckdb"
    result = extract(store.uri, db, "--metric-history")
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(db), read_only=True) as con:
        experiments = con.execute("select count(*) from experiments").fetchone()
        axes = con.execute("select distinct axis from metric_curves order by axis").fetchall()
    assert experiments is not None and experiments[0] > len(store.experiment_ids)
    assert axes == [("order",), ("step",)]  # curves logged without steps, and with them
    return db


PARQUET_TABLE = re.compile(r"CREATE OR REPLACE TEMPORARY VIEW `(\w+)` \(.*\) USING parquet", re.S)


def create_in_spark(spark: Any, statements: list[str]) -> None:
    """Run `runreport views`' statements, then read each Parquet table into Spark's memory
    once: every view's query then scans the same rows without opening the files again."""
    for statement in statements:
        spark.sql(statement)
    for statement in statements:
        if table := PARQUET_TABLE.match(statement.strip()):
            spark.sql(f"CACHE TABLE `{table.group(1)}`")


@pytest.mark.parametrize("view", VIEWS)
def test_view_rows_in_spark_equal_duckdb(spark: Any, spark_views: Path, view: str) -> None:
    con = duckdb.connect(str(spark_views), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        cursor = con.execute(f"select * from {view}")
        duck_columns = [d[0] for d in cursor.description]
        duck_rows = [tuple(row) for row in cursor.fetchall()]
    finally:
        con.close()
    frame = spark.sql(f"select * from {view}")
    # through Arrow: TIMESTAMP columns arrive as UTC instants, not the process's local time
    arrow = frame.toArrow()
    assert arrow.column_names == duck_columns
    spark_rows = [tuple(row[c] for c in arrow.column_names) for row in arrow.to_pylist()]
    assert_same_rows(duck_rows, spark_rows, view)


def assert_same_rows(
    expected: list[tuple[Any, ...]], got: list[tuple[Any, ...]], view: str
) -> None:
    assert len(got) == len(expected), f"{view}: {len(got)} rows in Spark, {len(expected)} in DuckDB"
    left = sorted((normal(row) for row in expected), key=sort_key)
    right = sorted((normal(row) for row in got), key=sort_key)
    for want, have in zip(left, right, strict=True):
        assert same(want, have), f"{view}: DuckDB {want} != Spark {have}"


def normal(value: Any) -> Any:
    """One representation for both engines' Python values."""
    if isinstance(value, (tuple, list)):
        items = tuple(normal(v) for v in value)
        # a map (key-value pairs) or a list of structs: the engines order them differently
        if items and all(isinstance(item, tuple) for item in items):
            return tuple(sorted(items, key=sort_key))
        return items
    if isinstance(value, dict):
        return tuple(sorted((k, normal(v)) for k, v in value.items()))
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        # an instant, as a UTC wall clock (what a DuckDB TIMESTAMP holds)
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def sort_key(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(sort_key(v) for v in value)
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, "nan" if math.isnan(value) else f"{float(value):.6e}")
    return (2, str(value))


def same(want: Any, have: Any) -> bool:
    if isinstance(want, tuple) and isinstance(have, tuple):
        return len(want) == len(have) and all(same(w, h) for w, h in zip(want, have, strict=True))
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(have, numbers) and not isinstance(want, bool):
        if math.isnan(want) or math.isnan(have):
            return math.isnan(want) and math.isnan(have)
        return math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-9)
    return bool(want == have)
