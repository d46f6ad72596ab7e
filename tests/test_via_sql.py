"""`--via sql`: the records read straight from a SQL store's tables equal what search_runs
returns, on SQLite, on PostgreSQL, on MySQL (Debian's MariaDB) and through a real mlflow
server; unknown schema revisions are refused; the store is only read, in one snapshot."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput

from etl.config import load_config
from etl.errors import ConfigError
from etl.extract import reader, sql_store
from etl.extract.parallel import page_records
from etl.extract.sql_store import TESTED_REVISIONS, open_snapshot
from etl.refresh import run_extract
from etl.warehouse.build import WarehouseBuilder
from etl.warehouse.views import create_views
from tests import conftest
from tests.conftest import LONG_TAG, StoreFacts, build_rich_store, log_run, run_cli
from tests.mysql import MysqlServer, mysql  # noqa: F401  (a fixture)
from tests.perf.make_store import generate_store
from tests.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from tests.test_entities import CONTEXT, build_entity_store
from tests.test_incremental import apply_every_kind_of_change, table_contents

FLOAT_MAX = 1.7976931348623157e308
Rows = dict[str, list[str]]


def table_rows(batches: Iterable[reader.Records]) -> Rows:
    """table -> its rows, each as repr (NaN equals NaN), sorted."""
    rows: dict[str, list[str]] = {}
    for records in batches:
        for table, columns in records.items():
            rows.setdefault(table, []).extend(map(repr, zip(*columns.values(), strict=True)))
    return {table: sorted(found) for table, found in rows.items()}


def via_search_runs(uri: str, metric_history: bool = True) -> Rows:
    """The records runreport's reference path builds through MlflowClient.search_runs."""

    def batches() -> Iterator[reader.Records]:
        client = reader.make_client(uri)
        experiments = list(reader.list_experiments(client))
        yield reader.experiment_records(experiments)
        ids = [e.experiment_id for e in experiments]
        for runs in reader.run_pages(client, ids):
            yield page_records(runs, client, metric_history)[0]

    return table_rows(batches())


def via_sql(uri: str, metric_history: bool = True) -> Rows:
    def batches() -> Iterator[reader.Records]:
        with open_snapshot(uri) as store:
            yield store.experiment_records()
            for _, records in store.run_records(None, metric_history):
                yield records

    return table_rows(batches())


def assert_same(expected: Rows, got: Rows) -> None:
    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table] == expected[table], table


def assert_rich_store_values(rows: Rows, facts: StoreFacts) -> None:
    """The hard cases of build_rich_store are really in what was compared."""
    runs = facts.run_ids
    assert len(rows["runs"]) == 10 and len(rows["experiments"]) == 4
    metrics = "\n".join(rows["metrics"])
    assert f"('{runs['odd_metrics']}', 'nan', nan," in metrics
    assert f"('{runs['odd_metrics']}', 'pinf', {FLOAT_MAX!r}," in metrics
    assert f"('{runs['odd_metrics']}', 'ninf', {-FLOAT_MAX!r}," in metrics
    assert f"('{runs['plain']}', 'loss', 0.2, 2," in metrics  # the latest of 3 points
    assert any(repr(LONG_TAG) in row for row in rows["tags"])
    assert any("日本語 run ✓" in row for row in rows["runs"])
    assert sum(f"'{facts.experiment_ids['gone']}', 'gone'" in r for r in rows["experiments"]) == 1
    assert sum("'deleted'" in row for row in rows["runs"]) == 2  # a run, a deleted experiment's
    assert len(rows["metric_history"]) == 8


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- SQLite --------------------------------------------------------------------------------


def test_sqlite_store_equals_search_runs_and_is_not_written(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    store = Path(facts.uri.removeprefix("sqlite:///"))
    before = digest(store)
    got = via_sql(facts.uri)
    assert digest(store) == before
    assert not list(store.parent.glob("*-journal")) and not list(store.parent.glob("*-wal"))
    assert_same(via_search_runs(facts.uri), got)
    assert_rich_store_values(got, facts)


def test_warehouse_via_sql_equals_warehouse_via_search_runs(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """Loaded with the same WarehouseBuilder, views and runs_wide included."""
    reference = tmp_path / "search_runs.duckdb"
    built = tmp_path / "sql.duckdb"
    assert via_sql_extract(rich_store.uri, built, metric_history=True) == 10
    load_search_runs(rich_store.uri, reference)
    assert table_contents(built) == table_contents(reference)


def via_sql_extract(uri: str, db: Path, mode: str = "full", metric_history: bool = False) -> int:
    """`runreport extract --via sql` through its function; returns the runs it read (for an
    incremental extract, those it re-read: no overlap, so only what changed counts)."""
    summary = run_extract(
        uri,
        db,
        mode=mode,
        via="sql",
        metric_history=metric_history,
        overlap=timedelta(0),
        show_progress=False,
    )
    return summary.runs


def load_search_runs(uri: str, db: Path, metric_history: bool = True) -> None:
    """The search_runs records loaded the way the extract loads them."""
    client = reader.make_client(uri)
    with WarehouseBuilder(db) as wh:
        experiments = list(reader.list_experiments(client))
        wh.append(reader.experiment_records(experiments))
        for runs in reader.run_pages(client, [e.experiment_id for e in experiments]):
            wh.append(page_records(runs, client, metric_history)[0])
        create_views(wh.connection)
        wh.commit()


def test_generated_benchmark_store_equals_search_runs(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        made = generate_store(
            tmp_path / "g.db", runs=400, experiments=4, seed=7, diverged_share=0.05
        )
    got = via_sql(made.uri)
    assert_same(via_search_runs(made.uri), got)
    assert len(got["runs"]) == 400 and len(got["metrics"]) == 2000
    assert len(got["metric_history"]) > 2000
    assert any(", nan, " in row for row in got["metrics"])
    assert any(f", {FLOAT_MAX!r}, " in row for row in got["metrics"])


def test_through_the_http_server_equals_sql(
    rich_store: StoreFacts, served_rich_store: conftest.MlflowServer
) -> None:
    assert_same(via_search_runs(served_rich_store.uri), via_sql(rich_store.uri))


# --- the guard -----------------------------------------------------------------------------


def store_at_revision(facts: StoreFacts, folder: Path, revision: str) -> str:
    copy = folder / "other-revision.db"
    shutil.copyfile(facts.uri.removeprefix("sqlite:///"), copy)
    con = sqlite3.connect(copy)
    with con:
        con.execute("update alembic_version set version_num = ?", [revision])
    con.close()
    return f"sqlite:///{copy}"


def test_unknown_schema_revision_is_refused(rich_store: StoreFacts, tmp_path: Path) -> None:
    uri = store_at_revision(rich_store, tmp_path, "0123456789ab")
    with pytest.raises(ConfigError) as caught, open_snapshot(uri):
        pass
    assert caught.value.exit_code == 2
    message = caught.value.one_line()
    assert "schema revision is 0123456789ab" in message
    assert "--via search_runs" in message
    assert list(TESTED_REVISIONS) == ["dc11669786a5"]


def test_cli_refuses_unknown_revision_and_keeps_the_warehouse(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    first = run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(db))
    assert first.exit_code == 0, first.output
    before = digest(db)
    uri = store_at_revision(rich_store, tmp_path, "0123456789ab")
    result = run_cli("extract", "--via", "sql", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 2
    assert "0123456789ab" in result.output and "--via search_runs" in result.output
    assert digest(db) == before


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
    assert load_config(None).via == "search_runs"
    bad = tmp_path / "bad.toml"
    bad.write_text('[warehouse]\nvia = "odbc"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.exit_code == 2
    assert "warehouse.via must be 'search_runs' or 'sql', not 'odbc'" in caught.value.message


# --- incremental ---------------------------------------------------------------------------


def test_incremental_via_sql_equals_full(tmp_path: Path) -> None:
    check_incremental_equals_full(build_rich_store(tmp_path / "store"), tmp_path)


def test_incremental_via_sql_equals_full_on_postgres(
    postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """PostgreSQL reads the changed runs by an id array, SQLite by a list of parameters."""
    facts = rich_store_in(postgres.new_database("incremental"), tmp_path)
    check_incremental_equals_full(facts, tmp_path)


def check_incremental_equals_full(facts: StoreFacts, tmp_path: Path) -> None:
    uri, runs, experiments = facts.uri, facts.run_ids, facts.experiment_ids
    client = MlflowClient(uri)
    client.delete_run(runs["failed"])  # deleted before the first extract, restored after
    zombie = log_run(client, experiments["alpha"], "zombie", status="RUNNING")
    db = tmp_path / "incremental.duckdb"
    assert via_sql_extract(uri, db) == 11
    time.sleep(0.01)

    apply_every_kind_of_change(facts, zombie)
    client.delete_experiment(experiments["alpha"])  # its runs become deleted

    # re-read: new run, plain (reopened), root + late child, unicode (deleted), failed
    # (restored), running (ended), zombie (RUNNING last time), odd_metrics (its experiment
    # deleted); not: child, grandchild, deleted, in_gone
    assert via_sql_extract(uri, db, mode="incremental") == 9
    full = tmp_path / "full.duckdb"
    via_sql_extract(uri, full)
    assert table_contents(db) == table_contents(full)
    reference = tmp_path / "search_runs.duckdb"
    load_search_runs(uri, reference, metric_history=False)
    assert table_contents(full) == table_contents(reference)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select status from runs where run_id = ?", [zombie]).fetchone() == (
        "KILLED",
    )
    con.close()


def test_datasets_inputs_and_outputs_equal_search_runs(tmp_path: Path) -> None:
    """Dataset inputs (with and without a context tag) and model outputs, read from the
    store's inputs, input_tags and datasets tables, as search_runs attaches them to runs."""
    store = build_entity_store(tmp_path / "store")
    got = via_sql(store.uri)
    assert_same(via_search_runs(store.uri), got)
    a, b = store.run_ids["a"], store.run_ids["b"]
    assert got["run_inputs"] == sorted(
        [
            repr((a, "diabetes", "d-test", "evaluation")),
            repr((a, "diabetes", "d-train", "training")),
            repr((b, "diabetes", "d-train", None)),
        ]
    )
    assert got["run_outputs"] == [repr((a, store.model_ids["m1"], 1))]
    assert len(got["datasets"]) == 2


def test_incremental_via_sql_reads_new_inputs_and_outputs(tmp_path: Path) -> None:
    store = build_entity_store(tmp_path / "store")
    client = MlflowClient(store.uri)
    db = tmp_path / "incremental.duckdb"
    via_sql_extract(store.uri, db)
    time.sleep(0.01)
    late = log_run(client, store.experiment_ids["models"], "late")
    fresh = Dataset("diabetes", "d-new", "code", '{"file": "z.csv"}', None, None)
    client.log_inputs(late, datasets=[DatasetInput(fresh, [InputTag(CONTEXT, "training")])])
    client.log_outputs(late, [LoggedModelOutput(store.model_ids["m2"], 3)])

    assert via_sql_extract(store.uri, db, mode="incremental") == 1
    reference = tmp_path / "search_runs.duckdb"
    load_search_runs(store.uri, reference, metric_history=False)
    tables = ("datasets", "run_inputs", "run_outputs", "runs")
    got, expected = table_contents(db, tables), table_contents(reference, tables)
    assert got == expected
    assert len(got["datasets"][1]) == 3 and len(got["run_outputs"][1]) == 2


def test_a_store_without_models_or_traces_is_extracted_without_importing_mlflow(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """The hourly incremental's fixed cost: MLflow's import is seconds, and a store with no
    logged model, registered model or trace needs nothing from it."""
    db = tmp_path / "runs.duckdb"
    program = (
        "import sys; from etl.refresh import run_extract; "
        f"[run_extract({rich_store.uri!r}, Path({str(db)!r}), mode=mode, via='sql', "
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


def test_rows_of_runs_that_do_not_exist_are_left_out(tmp_path: Path) -> None:
    """A full read takes params, tags and metrics whole and deletes orphans in DuckDB:
    rows whose run is gone (SQLite does not enforce MLflow's foreign keys) are not in the
    warehouse, as search_runs never returns them."""
    facts = build_rich_store(tmp_path / "store")
    store = Path(facts.uri.removeprefix("sqlite:///"))
    con = sqlite3.connect(store)
    con.execute("insert into params (key, value, run_uuid) values ('lost', 'x', 'orphan-run')")
    con.execute("insert into tags (key, value, run_uuid) values ('lost', 'x', 'orphan-run')")
    con.execute(
        "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
        "values ('lost', 1.0, 0, 0, 0, 'orphan-run')"
    )
    con.commit()
    con.close()
    db = tmp_path / "runs.duckdb"
    assert via_sql_extract(facts.uri, db) == 10
    reference = tmp_path / "search_runs.duckdb"
    load_search_runs(facts.uri, reference, metric_history=False)
    assert table_contents(db) == table_contents(reference)
    warehouse = duckdb.connect(str(db), read_only=True)
    for table in ("params", "tags", "metrics"):
        found = warehouse.execute(f"select count(*) from {table} where run_id = 'orphan-run'")
        assert found.fetchone() == (0,), table
    warehouse.close()


# --- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_rich_store(
    postgres: PostgresCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> StoreFacts:
    """build_rich_store's store, on PostgreSQL."""
    return rich_store_in(postgres.new_database("rich"), tmp_path_factory.mktemp("pg-rich"))


def rich_store_in(uri: str, folder: Path) -> StoreFacts:
    """build_rich_store's store in the empty database at `uri`, its artifacts in `folder`."""
    MlflowClient(uri).search_experiments()  # creates the schema
    with contextlib.chdir(folder):
        return build_rich_store(folder, uri)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_postgres_store_equals_search_runs(pg_rich_store: StoreFacts, driver: str) -> None:
    """Both drivers MLflow users run PostgreSQL with; their own cursors are read."""
    uri = pg_rich_store.uri.replace("postgresql://", f"postgresql+{driver}://", 1)
    got = via_sql(uri)
    assert_same(via_search_runs(pg_rich_store.uri), got)
    assert_rich_store_values(got, pg_rich_store)


def test_postgres_drivers_without_named_cursors_read_through_sqlalchemy(
    pg_rich_store: StoreFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_store, "NAMED_CURSOR_DRIVERS", ())
    assert_same(via_search_runs(pg_rich_store.uri), via_sql(pg_rich_store.uri))


def test_a_table_the_role_cannot_read_fails_in_one_line_and_keeps_the_warehouse(
    pg_rich_store: StoreFacts,
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
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(
        "runreport: error: reading the tracking store postgresql://partial:***@127.0.0.1:"
    ), last
    assert "failed: permission denied for table params." in last
    assert "p4rt" not in result.output
    assert digest(db) == before


def test_postgres_through_the_http_server(pg_rich_store: StoreFacts) -> None:
    server = conftest.start_mlflow_server(pg_rich_store.uri)
    try:
        assert_same(via_search_runs(server.uri), via_sql(pg_rich_store.uri))
    finally:
        server.stop()


def test_postgres_needs_only_read_access(
    pg_rich_store: StoreFacts,
    postgres: PostgresCluster,  # noqa: F811
) -> None:
    postgres.execute(
        "create role reader login password 'r3ad'; "
        "grant select on all tables in schema public to reader",
        database="rich",
    )
    reader_uri = postgres.uri("rich", "reader", "r3ad")
    assert_same(via_sql(pg_rich_store.uri), via_sql(reader_uri))


def test_postgres_reads_one_snapshot(pg_rich_store: StoreFacts) -> None:
    client = MlflowClient(pg_rich_store.uri)
    with open_snapshot(pg_rich_store.uri) as store:
        before = store.run_count()
        added = log_run(client, pg_rich_store.experiment_ids["beta"], "while reading")
        records = [r for _, r in store.run_records()]
    read = [run_id for r in records for run_id in r["runs"]["run_id"]]
    assert len(read) == before and added not in read
    assert client.get_run(added).info.run_name == "while reading"


# --- MySQL (MariaDB) -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def my_rich_store(
    mysql: MysqlServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> StoreFacts:
    """build_rich_store's store, on MySQL."""
    return rich_store_in(mysql.new_database("rich"), tmp_path_factory.mktemp("my-rich"))


def test_mysql_store_equals_search_runs(my_rich_store: StoreFacts) -> None:
    got = via_sql(my_rich_store.uri)
    assert_same(via_search_runs(my_rich_store.uri), got)
    assert_rich_store_values(got, my_rich_store)


def test_mysql_needs_only_read_access(
    my_rich_store: StoreFacts,
    mysql: MysqlServer,  # noqa: F811
) -> None:
    mysql.execute(
        "create user 'reader'@'%' identified by 'r3ad'; grant select on rich.* to 'reader'@'%'"
    )
    reader_uri = mysql.uri("rich", "reader", "r3ad")
    assert_same(via_sql(my_rich_store.uri), via_sql(reader_uri))


def test_incremental_via_sql_equals_full_on_mysql(
    mysql: MysqlServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    check_incremental_equals_full(
        rich_store_in(mysql.new_database("incremental"), tmp_path), tmp_path
    )
