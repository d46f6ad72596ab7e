"""`--via sql` beyond the source contract (tests/test_source_contract.py, which holds it
equal to MLflow's listing on every store shape): unknown schema revisions are refused, the
store is only read (by a read-only role too), in one snapshot, without importing MLflow
when nothing needs it, and a table the role cannot read fails in one line."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from etl.config import load_config
from etl.errors import ConfigError, JobFailed
from etl.extract import reader, sql_store, store_shape
from etl.extract.sql_store import open_snapshot
from tests.conftest import StoreFacts, log_run, run_cli, unstamped
from tests.mysql import MysqlServer, mysql  # noqa: F401  (a fixture)
from tests.oracle import Rows, mlflow_rows, warehouse_rows
from tests.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from tests.store_shapes import (  # noqa: F401  (fixtures)
    my_rich_store,
    pg_rich_store,
    rich_store_in,
)
from tests.test_incremental import table_contents
from tests.test_source_contract import extract


def via_sql(uri: str, metric_history: bool = True) -> Rows:
    """The snapshot's records: table -> its rows, each a repr, sorted."""

    def batches() -> Iterator[reader.Records]:
        with open_snapshot(uri) as store:
            yield store.experiment_records()
            for _, records in store.run_records(None, metric_history):
                yield records

    rows: Rows = {}
    for records in batches():
        for table, columns in records.items():
            rows.setdefault(table, []).extend(map(repr, zip(*columns.values(), strict=True)))
    return {table: sorted(found) for table, found in rows.items()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the guard -----------------------------------------------------------------------------


def store_copy(facts: StoreFacts, folder: Path, *changes: str) -> str:
    """A copy of the store with these SQL statements applied to it."""
    copy = folder / "changed.db"
    shutil.copyfile(facts.uri.removeprefix("sqlite:///"), copy)
    con = sqlite3.connect(copy)
    with con:
        for change in changes:
            con.execute(change)
    con.close()
    return f"sqlite:///{copy}"


def test_any_revision_of_the_needed_shape_is_read(rich_store: StoreFacts, tmp_path: Path) -> None:
    """The guard checks columns, not a list of revisions: 3.18 added three revisions that
    touch no table runreport reads."""
    uri = store_copy(
        rich_store, tmp_path, "update alembic_version set version_num = 'f4a9b2c7d1e6'"
    )
    with open_snapshot(uri) as store:
        assert store.revision == "f4a9b2c7d1e6"
        assert store.run_count() == 10


def test_a_store_missing_a_needed_column_is_refused_naming_it(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    first = run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(db))
    assert first.exit_code == 0, first.output
    before = digest(db)
    uri = store_copy(rich_store, tmp_path, "alter table runs drop column artifact_uri")
    result = run_cli("extract", "--via", "sql", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 2, result.output
    last = unstamped(result.output).strip().splitlines()[-1]
    assert "no column runs.artifact_uri (added by MLflow 1.0)" in last
    assert "mlflow db upgrade" in last
    assert digest(db) == before


def test_a_store_older_than_datasets_is_read_without_them(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """MLflow before 2.4 had no datasets, inputs or input_tags: those tables stay empty."""
    uri = store_copy(
        rich_store, tmp_path, "drop table input_tags", "drop table inputs", "drop table datasets"
    )
    with open_snapshot(uri) as store:
        assert store_shape.DATASETS not in store.parts
        inputs = [r for _, records in store.run_records() for r in records["run_inputs"]["run_id"]]
    assert inputs == []
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--via", "sql", "--tracking-uri", uri, "--db", str(db)).exit_code == 0
    contents = table_contents(db, ("runs", "datasets", "run_inputs", "run_outputs"))
    assert len(contents["runs"][1]) == 10
    assert contents["datasets"][1] == contents["run_inputs"][1] == []


def test_reading_the_revision_of_a_locked_store_says_what_happened(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """A database error is not "not an MLflow tracking store" (item 8 of issue 23)."""
    uri = store_copy(rich_store, tmp_path)
    locker = sqlite3.connect(uri.removeprefix("sqlite:///"), timeout=0)
    locker.execute("begin exclusive")
    try:
        with pytest.raises(JobFailed) as caught, open_snapshot(uri, timeout_seconds=1):
            pass
    finally:
        locker.rollback()
        locker.close()
    assert "database is locked" in caught.value.one_line()
    assert "not an MLflow tracking store" not in caught.value.one_line()


def test_cli_via_sql_equals_cli_via_search_runs(rich_store: StoreFacts, tmp_path: Path) -> None:
    by_api, by_sql = tmp_path / "api.duckdb", tmp_path / "sql.duckdb"
    common = ("--tracking-uri", rich_store.uri, "--metric-history")
    assert run_cli("extract", *common, "--db", str(by_api)).exit_code == 0
    result = run_cli("extract", *common, "--db", str(by_sql), "--via", "sql")
    assert result.exit_code == 0, result.output
    assert table_contents(by_sql) == table_contents(by_api)


def test_an_http_uri_is_refused(rich_store: StoreFacts) -> None:
    with pytest.raises(ConfigError) as caught, open_snapshot("http://127.0.0.1:5000"):
        pass
    assert caught.value.exit_code == 2
    assert "--via search_runs" in caught.value.one_line()


def test_config_key_warehouse_via(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[warehouse]\nvia = "sql"\n')
    assert load_config(good).via == "sql"
    assert load_config(None).via == "auto"
    bad = tmp_path / "bad.toml"
    bad.write_text('[warehouse]\nvia = "odbc"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.exit_code == 2
    wrong = "warehouse.via must be 'auto' or 'search_runs' or 'sql', not 'odbc'"
    assert wrong in caught.value.message


# --- incremental ---------------------------------------------------------------------------


def test_a_store_without_models_or_traces_is_extracted_without_importing_mlflow(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """The hourly incremental's fixed cost: MLflow's import is seconds, and a store with no
    logged model, registered model or trace needs nothing from it."""
    db = tmp_path / "runs.duckdb"
    program = (
        "import sys; from etl.refresh import ExtractOptions, run_extract; "
        f"[run_extract({rich_store.uri!r}, Path({str(db)!r}), mode, ExtractOptions(via='sql'), "
        "show_progress=False) for mode in ('full', 'incremental')]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path; " + program],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from runs").fetchone() == (10,)
    assert con.execute("select mode from extract_log order by extract_id").fetchall() == [
        ("full",),
        ("incremental",),
    ]
    con.close()


# --- PostgreSQL ----------------------------------------------------------------------------


def test_postgres_drivers_without_named_cursors_read_through_sqlalchemy(
    pg_rich_store: StoreFacts,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(sql_store, "NAMED_CURSOR_DRIVERS", ())
    db = tmp_path / "runs.duckdb"
    extract(pg_rich_store.uri, db, "sql")
    assert warehouse_rows(db) == mlflow_rows(pg_rich_store.uri)


def test_a_table_the_role_cannot_read_fails_in_one_line_and_keeps_the_warehouse(
    pg_rich_store: StoreFacts,  # noqa: F811
    postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    postgres.execute(
        "create role partial login password 'p4rt'; "
        "grant select on all tables in schema public to partial; "
        "revoke select on params from partial",
        database="rich",
    )
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--tracking-uri", pg_rich_store.uri, "--db", str(db)).exit_code == 0
    before = digest(db)
    uri = postgres.uri("rich", "partial", "p4rt")
    result = run_cli("extract", "--via", "sql", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 1, result.output
    last = unstamped(result.output).strip().splitlines()[-1]
    assert last.startswith(
        "runreport: error: reading the tracking store postgresql://partial:***@127.0.0.1:"
    ), last
    assert "failed: permission denied for table params." in last
    assert "p4rt" not in result.output
    assert digest(db) == before


def test_postgres_needs_only_read_access(
    pg_rich_store: StoreFacts,  # noqa: F811
    postgres: PostgresCluster,  # noqa: F811
) -> None:
    postgres.execute(
        "create role reader login password 'r3ad'; "
        "grant select on all tables in schema public to reader",
        database="rich",
    )
    reader_uri = postgres.uri("rich", "reader", "r3ad")
    assert via_sql(reader_uri) == via_sql(pg_rich_store.uri)


def test_postgres_reads_one_snapshot(
    postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    facts = rich_store_in(postgres.new_database("snapshot"), tmp_path)  # this test writes
    client = MlflowClient(facts.uri)
    with open_snapshot(facts.uri) as store:
        before = store.run_count()
        added = log_run(client, facts.experiment_ids["beta"], "while reading")
        records = [r for _, r in store.run_records()]
    read = [run_id for r in records for run_id in r["runs"]["run_id"]]
    assert len(read) == before and added not in read
    assert client.get_run(added).info.run_name == "while reading"


# --- MySQL (MariaDB) -----------------------------------------------------------------------


def test_mysql_needs_only_read_access(
    my_rich_store: StoreFacts,  # noqa: F811
    mysql: MysqlServer,  # noqa: F811
) -> None:
    mysql.execute(
        "create user 'reader'@'%' identified by 'r3ad'; grant select on rich.* to 'reader'@'%'"
    )
    reader_uri = mysql.uri("rich", "reader", "r3ad")
    assert via_sql(reader_uri) == via_sql(my_rich_store.uri)


# --- bounded waits (issue 23, item 5) ------------------------------------------------------


@pytest.mark.parametrize("via", ["sql", "auto"])
def test_item5_a_database_that_never_answers_fails_within_the_timeout(
    via: str, tmp_path: Path
) -> None:
    """A PostgreSQL that accepts the connection and never answers held the extract, and
    every later cron run behind its lock, forever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    db = tmp_path / "runs.duckdb"
    uri = f"postgresql://reader:pw@127.0.0.1:{port}/mlflow"
    started = time.monotonic()
    try:
        result = run_cli(
            "extract", "--via", via, "--tracking-uri", uri, "--db", str(db),
            env={"RUNREPORT_TRACKING_TIMEOUT": "2"},
        )  # fmt: skip
    finally:
        silent.close()
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.output
    last = unstamped(result.output).strip().splitlines()[-1]
    assert last.startswith("runreport: error: reading the tracking store postgresql://reader:***@")
    assert "timeout" in last.lower() and not db.exists()


def test_item5_a_lock_held_on_runs_fails_within_the_timeout(
    pg_rich_store: StoreFacts,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A migration or VACUUM FULL holds runs: the extract waits at most the timeout."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_rich_store.uri)
    db = tmp_path / "runs.duckdb"
    started = time.monotonic()
    with engine.connect() as holder:
        holder.execute(text("lock table runs in access exclusive mode"))
        result = run_cli(
            "extract", "--via", "sql", "--tracking-uri", pg_rich_store.uri, "--db", str(db),
            env={"RUNREPORT_TRACKING_TIMEOUT": "2"},
        )  # fmt: skip
        holder.rollback()
    engine.dispose()
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.output
    assert "statement timeout" in unstamped(result.output).strip().splitlines()[-1]


def test_item11_a_missing_database_driver_is_one_line_naming_the_package(tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    uri = "mysql+mysqldb://reader:pw@127.0.0.1:9/mlflow"  # mysqlclient is not installed
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 2, result.output
    assert unstamped(result.output).strip().splitlines()[-1] == (
        "runreport: error: the database driver MySQLdb for mysql+mysqldb://reader:***@"
        "127.0.0.1:9/mlflow is not installed. Install it into runreport's environment: "
        "pip install mysqlclient"
    )
