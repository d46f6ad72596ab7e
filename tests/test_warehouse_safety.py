"""Issue #14, the warehouse side: no extract installs a broken warehouse, replaces a file
that is not one, or loses data; after each failure the previous warehouse is
byte-identical and the next extract succeeds."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from etl.errors import ConfigError, JobFailed
from etl.refresh import run_extract
from etl.schema import SCHEMA_VERSION, empty_records
from etl.warehouse.build import WarehouseBuilder
from etl.warehouse.connect import open_warehouse
from etl.warehouse.settings import ViewSettings
from etl.warehouse.views import create_views
from tests.conftest import StoreFacts, build_rich_store, log_run, new_store, run_cli
from tests.oracle import table_counts
from tests.test_extract import assert_one_line_error, digest, extract


def query(db: Path, sql: str, params: list[object] | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".runreport-tmp-" in p.name)


@pytest.fixture()
def warehouse(rich_store: StoreFacts, tmp_path: Path) -> Path:
    db = tmp_path / "runs.duckdb"
    result = extract(rich_store.uri, db)
    assert result.exit_code == 0, result.output
    return db


# --- 1. a full disk never installs a broken warehouse ----------------------------------


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MB tmpfs, unmounted after the test; skipped where mounting is not allowed."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system of `folder` up to `leave_bytes` free."""
    filler = folder / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    with filler.open("r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - leave_bytes))
    return filler


@pytest.mark.parametrize("leave_kb", [0, 64, 512])
def test_a_full_disk_keeps_the_old_warehouse(
    rich_store: StoreFacts, small_disk: Path, leave_kb: int
) -> None:
    db = small_disk / "runs.duckdb"
    assert extract(rich_store.uri, db).exit_code == 0
    before = digest(db)
    filler = fill(small_disk, leave_kb * 1024)

    result = extract(rich_store.uri, db)
    assert_one_line_error(result, 1, str(db), "the disk may be full")
    assert digest(db) == before
    assert leftovers(small_disk) == []

    filler.unlink()
    assert extract(rich_store.uri, db).exit_code == 0
    assert query(db, "select count(*) from runs") == [(10,)]


def test_an_incremental_extract_on_a_full_disk_keeps_the_old_warehouse(
    small_disk: Path, tmp_path: Path
) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = small_disk / "runs.duckdb"
    assert extract(facts.uri, db).exit_code == 0
    before = digest(db)
    log_run(MlflowClient(facts.uri), facts.experiment_ids["alpha"], "after", metrics={"m": 1})
    filler = fill(small_disk, 64 * 1024)

    # in its own process, as cron runs it: a DuckDB instance that hit a FATAL error keeps
    # its (deleted) file open, and so its disk space, until the process ends
    failed = subprocess.run(
        [sys.executable, "-m", "etl", "extract", "--incremental", "--tracking-uri", facts.uri,
         "--db", str(db)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if "runreport: error:" in line]
    assert len(errors) == 1 and "the disk may be full" in errors[0], failed.stderr
    assert digest(db) == before
    assert leftovers(small_disk) == []
    filler.unlink()
    again = extract(facts.uri, db, "--incremental")
    assert again.exit_code == 0, again.output
    assert query(db, "select count(*) from runs") == [(11,)]


def test_a_failed_first_step_leaves_no_temp_file(warehouse: Path) -> None:
    # a writer holding the warehouse: attaching it, the first step, fails
    with (
        notebook_writer(warehouse),
        pytest.raises(JobFailed, match="open for writing"),
        WarehouseBuilder(warehouse),
    ):
        pass
    assert leftovers(warehouse.parent) == []


# --- 2. --db refuses what is not a runreport warehouse -------------------------------


def test_db_that_is_another_duckdb_database_is_refused(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    other = tmp_path / "team.duckdb"
    con = duckdb.connect(str(other))
    con.execute("create table budget as select 42 as amount")
    con.close()
    before = digest(other)
    result = extract(rich_store.uri, other)
    assert_one_line_error(result, 2, str(other), "not a runreport warehouse")
    assert digest(other) == before


def test_db_that_is_not_a_duckdb_file_is_refused(rich_store: StoreFacts, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    result = extract(rich_store.uri, notes)
    assert_one_line_error(result, 2, str(notes), "not a DuckDB file")
    assert notes.read_text() == "keep me\n"


def test_db_that_is_the_mlflow_store_is_refused(tmp_path: Path) -> None:
    uri = new_store(tmp_path / "store")
    log_run(MlflowClient(uri), "0", "precious")
    store = tmp_path / "store" / "mlflow.db"
    before = digest(store)
    result = extract(uri, store)
    assert_one_line_error(result, 2, str(store), "is the MLflow store itself")
    assert digest(store) == before


def test_a_warehouse_from_before_the_marker_is_accepted(
    warehouse: Path, rich_store: StoreFacts
) -> None:
    con = duckdb.connect(str(warehouse))
    con.execute("drop table runreport_meta")
    con.close()
    assert extract(rich_store.uri, warehouse).exit_code == 0
    assert query(warehouse, "select value from runreport_meta") == [(str(SCHEMA_VERSION),)]


# --- 3. schema version ----------------------------------------------------------------


def test_another_schema_version_makes_the_incremental_a_full_extract(
    warehouse: Path, rich_store: StoreFacts
) -> None:
    # a warehouse of version 1: no runreport_meta, extract_log without `warnings`
    con = duckdb.connect(str(warehouse))
    con.execute("drop table runreport_meta")
    con.execute("alter table extract_log drop column warnings")
    con.close()
    result = extract(rich_store.uri, warehouse, "--incremental")
    assert result.exit_code == 0, result.output
    assert f"schema version none, this runreport writes {SCHEMA_VERSION}" in result.output
    assert "doing a full extract" in result.output
    assert query(warehouse, "select mode, warnings from extract_log order by extract_id") == [
        ("full", None),
        ("full", 0),
    ]
    assert query(warehouse, "select key, value from runreport_meta") == [
        ("schema_version", str(SCHEMA_VERSION))
    ]
    # with the version current, the next one is incremental
    assert extract(rich_store.uri, warehouse, "--incremental").exit_code == 0
    assert query(warehouse, "select mode from extract_log where extract_id = 3") == [
        ("incremental",)
    ]


# --- 4. empty stores ------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_uri_is_refused(warehouse: Path, uri: str) -> None:
    before = digest(warehouse)
    result = extract(uri, warehouse)
    assert_one_line_error(result, 2, "names no SQLite file", "sqlite:///relative/path.db")
    assert digest(warehouse) == before


def test_a_full_extract_that_loses_most_runs_keeps_the_old_warehouse(
    warehouse: Path, tmp_path: Path
) -> None:
    before = digest(warehouse)
    uri = new_store(tmp_path / "nearly-empty")
    for name in ("a", "b", "c", "d"):
        log_run(MlflowClient(uri), "0", name)
    result = extract(uri, warehouse)
    assert_one_line_error(
        result, 1, "the store returned 4 runs", "holds 10", "unchanged", "--allow-shrink"
    )
    assert digest(warehouse) == before
    assert leftovers(warehouse.parent) == []
    # five of ten is not "far fewer"; with --allow-shrink any number goes
    log_run(MlflowClient(uri), "0", "e")
    assert extract(uri, warehouse).exit_code == 0
    assert extract(new_store(tmp_path / "empty"), warehouse, "--allow-shrink").exit_code == 0
    assert query(warehouse, "select count(*) from runs") == [(0,)]
    assert query(warehouse, "select status from extract_log order by extract_id") == [
        ("ok",),
        ("failed",),
        ("ok",),
        ("ok",),
    ]


# --- 5. deletes over many pages under the memory cap ----------------------------------


def synthetic_warehouse(db: Path, runs: int) -> list[str]:
    """A warehouse of `runs` runs with 7 tags, 5 params and 5 metrics each, written
    through WarehouseBuilder.append as an extract writes it (20,000 runs a batch, each
    run's rows together)."""
    ids = [f"{i:032x}" for i in range(runs)]
    with WarehouseBuilder(db) as wh:
        for start in range(0, runs, 20_000):
            batch = range(start, min(runs, start + 20_000))
            run_ids = ids[batch.start : batch.stop]
            records = empty_records()
            columns = {
                "runs": {
                    "run_id": run_ids,
                    "experiment_id": [str(i % 51) for i in batch],
                    "run_name": [f"run {i}" for i in batch],
                    "status": ["FINISHED"] * len(batch),
                    "user_id": ["someone"] * len(batch),
                    "start_time": [1_700_000_000_000 + i for i in batch],
                    "end_time": [1_700_000_060_000 + i for i in batch],
                    "lifecycle_stage": ["active"] * len(batch),
                    "artifact_uri": [f"file:///artifacts/{run_id}" for run_id in run_ids],
                },
                "metrics": {
                    "run_id": [run_id for run_id in run_ids for _ in range(5)],
                    "key": [f"m{k}" for _ in batch for k in range(5)],
                    "value": [i * 0.5 for i in batch for _ in range(5)],
                    "step": [0] * (5 * len(batch)),
                    "timestamp": [1_700_000_000_000 + i for i in batch for _ in range(5)],
                },
            }
            for table, count in (("tags", 7), ("params", 5)):
                columns[table] = {
                    "run_id": [run_id for run_id in run_ids for _ in range(count)],
                    "key": [f"{table}{k}" for _ in batch for k in range(count)],
                    "value": [f"value {k} of {i}" for i in batch for k in range(count)],
                }
            for table, values in columns.items():
                for column, column_values in values.items():
                    records[table][column].extend(column_values)
            wh.append(records)
        wh.commit()
    return ids


@pytest.mark.slow
def test_deletes_over_many_pages_fit_under_the_memory_cap(tmp_path: Path) -> None:
    """300,000 runs (66 MB): with a fixed 32 MB cap, deleting 5,000 runs spread over the
    whole table failed with DuckDB's OutOfMemoryException."""
    db = tmp_path / "runs.duckdb"
    ids = synthetic_warehouse(db, 300_000)
    doomed = random.Random(14).sample(ids, 5_000)
    with WarehouseBuilder(db, from_existing=True) as wh:
        wh.delete_runs(doomed)
        wh.commit()
    counts = table_counts(db)
    assert (counts["runs"], counts["tags"], counts["params"], counts["metrics"]) == (
        295_000,
        7 * 295_000,
        5 * 295_000,
        5 * 295_000,
    )
    assert query(db, "select count(*) from runs where run_id = ?", [doomed[0]]) == [(0,)]


# --- 6. quotes in paths, view errors name the file ------------------------------------


def test_a_warehouse_path_with_a_quote(rich_store: StoreFacts, tmp_path: Path) -> None:
    folder = tmp_path / "it's"
    folder.mkdir()
    db = folder / "runs.duckdb"
    assert extract(rich_store.uri, db).exit_code == 0
    second = extract(rich_store.uri, db)  # attaches the previous warehouse
    assert second.exit_code == 0, second.output
    assert extract(rich_store.uri, db, "--incremental").exit_code == 0
    assert query(db, "select mode from extract_log order by extract_id") == [
        ("full",),
        ("full",),
        ("incremental",),
    ]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("select no_such_column from runs", "Binder Error"),
        ("selec run_id form runs", "Parser Error"),
        ("select * from no_such_table", "Catalog Error"),
    ],
)
def test_a_broken_view_file_is_named(warehouse: Path, tmp_path: Path, body: str, kind: str):
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "fine.sql").write_text("select run_id from runs")
    (folder / "broken.sql").write_text(body)
    con = duckdb.connect(str(warehouse))
    try:
        with pytest.raises(JobFailed) as failure:
            create_views(con, folder=folder)
    finally:
        con.close()
    line = failure.value.one_line()
    assert "sql/broken.sql" in line and kind in line and "\n" not in line


# --- 7. one way to open the warehouse --------------------------------------------------


def test_open_warehouse_errors(warehouse: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        open_warehouse(tmp_path / "missing.duckdb")
    assert missing.value.one_line() == (
        f"no warehouse at {tmp_path / 'missing.duckdb'}. Build it: runreport extract"
    )
    text = tmp_path / "text.duckdb"
    text.write_text("x")
    with pytest.raises(ConfigError, match="not a DuckDB file"):
        open_warehouse(text)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(ConfigError, match="not a runreport warehouse"):
        open_warehouse(other)
    con = open_warehouse(warehouse)
    try:
        assert con.execute("select current_setting('TimeZone')").fetchone() == ("UTC",)
        assert con.execute("select current_setting('enable_external_access')").fetchone() == (
            False,
        )
        with pytest.raises(duckdb.Error):
            con.execute("create table intruder (a int)")
    finally:
        con.close()


@contextlib.contextmanager
def notebook_writer(db: Path) -> Iterator[int]:
    """Another process holding the warehouse open read-write, as a notebook does."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "time.sleep(60)", str(db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_extract_while_a_notebook_writes_the_warehouse(
    warehouse: Path, rich_store: StoreFacts
) -> None:
    before = digest(warehouse)
    with notebook_writer(warehouse) as pid:
        result = extract(rich_store.uri, warehouse)
        sql = run_cli("sql", "--db", str(warehouse), "select 1")
    for outcome in (result, sql):
        assert_one_line_error(
            outcome, 1, f"{warehouse} is open for writing", f"PID {pid}", "read_only=True"
        )
    assert digest(warehouse) == before
    assert extract(rich_store.uri, warehouse).exit_code == 0


def test_the_extract_package_never_imports_duckdb() -> None:
    code = (
        "import sys, etl.extract.incremental, etl.extract.reader, etl.extract.parallel, "
        "etl.extract.tracking; print('duckdb' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stderr


# --- 8. settings survive a bare extract -----------------------------------------------


def test_settings_survive_an_extract_without_settings(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    settings = ViewSettings(
        timezone="Asia/Tokyo", zombie_after_hours=5, metric_directions={"val_loss": True}
    )
    run_extract(rich_store.uri, db, view_settings=settings, show_progress=False)
    run_extract(rich_store.uri, db, show_progress=False)
    run_extract(rich_store.uri, db, mode="incremental", show_progress=False)
    assert query(db, "select * from runreport_settings") == [("Asia/Tokyo", 5.0)]
    assert query(
        db, "select greater_is_better from metric_directions where metric_key = 'val_loss'"
    ) == [(True,)]
    # and without any earlier settings, the defaults
    fresh = tmp_path / "fresh.duckdb"
    run_extract(rich_store.uri, fresh, show_progress=False)
    assert query(fresh, "select * from runreport_settings") == [("UTC", 24.0)]


# --- 9. runs_wide -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_store(tmp_path_factory: pytest.TempPathFactory) -> StoreFacts:
    """loss logged by three runs, LOSS by one; a deleted run and a deleted experiment."""
    facts = StoreFacts(new_store(tmp_path_factory.mktemp("case")))
    client = MlflowClient(facts.uri)
    gone = client.create_experiment("gone")
    for i in range(3):
        facts.run_ids[f"lower{i}"] = log_run(client, "0", f"lower{i}", metrics={"loss": i})
    facts.run_ids["upper"] = log_run(client, "0", "upper", metrics={"LOSS": 9.0, "Loss": 8.0})
    facts.run_ids["deleted"] = log_run(client, "0", "deleted", metrics={"loss": 5.0})
    client.delete_run(facts.run_ids["deleted"])
    facts.run_ids["in_gone"] = log_run(client, gone, "in gone")
    client.delete_experiment(gone)
    return facts


def test_runs_wide_names_and_rows(case_store: StoreFacts, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    assert extract(case_store.uri, db).exit_code == 0
    columns = [name for (name, *_rest) in query(db, "describe runs_wide")]
    # keys in sort order; the plain name is the lower-case key's
    assert [c for c in columns if c.lower().startswith("metrics.")] == [
        "metrics.LOSS#2",
        "metrics.Loss#3",
        "metrics.loss",
    ]
    assert query(db, 'select "tags.mlflow.runName", "metrics.loss" from runs_wide order by 1') == [
        ("lower0", 0.0),
        ("lower1", 1.0),
        ("lower2", 2.0),
        ("upper", None),
    ]
    assert query(
        db,
        'select "metrics.LOSS#2", "metrics.Loss#3" from runs_wide where run_id = ?',
        [case_store.run_ids["upper"]],
    ) == [(9.0, 8.0)]
    assert query(db, 'select "tags.mlflow.runName" from runs_wide_all order by 1') == [
        ("deleted",),
        ("in gone",),
        ("lower0",),
        ("lower1",),
        ("lower2",),
        ("upper",),
    ]
    deleted = case_store.run_ids["deleted"]
    wide_all = 'select "metrics.loss" from runs_wide_all where run_id = ?'
    assert query(db, wide_all, [deleted]) == [(5.0,)]


# --- 10. file stores: a full extract is the cheaper one -----------------------------------


def test_incremental_on_a_file_store_does_a_full_extract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(str(mlruns))
    log_run(client, client.create_experiment("legacy"), "old run", metrics={"m": 2.0})
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--tracking-uri", str(mlruns), "--db", str(db)).exit_code == 0
    result = run_cli("extract", "--tracking-uri", str(mlruns), "--db", str(db), "--incremental")
    assert result.exit_code == 0, result.output
    assert "file store: doing a full extract" in result.output
    assert query(db, "select mode, runs_seen from extract_log order by extract_id") == [
        ("full", 1),
        ("full", 1),
    ]


# --- 11. --metric-history never aborts the extract ------------------------------------------


def test_unreadable_metric_history_is_skipped_and_counted(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    # the store's history table is gone (a damaged store); search_runs reads latest_metrics
    store = sqlite3.connect(facts.uri.removeprefix("sqlite:///"))
    store.execute("alter table metrics rename to metrics_lost")
    store.commit()
    store.close()
    started = time.monotonic()
    result = extract(facts.uri, db, "--metric-history")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "WARNING" in line]
    # plain: mse, loss; odd metrics: nan, pinf, ninf; the deleted experiment's run: r2:
    # 3 runs, 6 keys, summed up in one line with the cause
    assert len(warnings) == 1, result.output
    assert "metric history not read for 3 runs (6 of their 6 keys): " in warnings[0]
    assert "sqlite3.OperationalError" in warnings[0]
    assert query(db, "select status, warnings from extract_log") == [("ok", 3)]
    assert query(db, "select count(*) from metric_history") == [(0,)]
    assert query(db, "select count(*) from metrics") == [(6,)]
    assert time.monotonic() - started < 60
