"""`runreport extract --incremental` picks its mode (the source contract,
tests/test_source_contract.py, holds it equal to a full extract after every kind of
change), and the parallel full extract ends with exactly the serial one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import mlflow
from mlflow import MlflowClient

from tests.conftest import StoreFacts, build_rich_store, log_run, run_cli

TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "metrics",
    "tags",
    "metric_history",
    "runs_wide",
)


def table_contents(db: Path, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        contents = {}
        for table in tables:
            columns = [c[0] for c in con.execute(f"describe {table}").fetchall()]
            rows = con.execute(f"select * from {table}").fetchall()
            # NaN != NaN: compare through repr so NaN rows count as equal
            contents[table] = (columns, sorted(map(repr, rows)))
        return contents
    finally:
        con.close()


def extract(uri: str, db: Path, *extra: str) -> None:
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db), *extra)
    assert result.exit_code == 0, result.output


def apply_every_kind_of_change(facts: StoreFacts, zombie: str) -> str:
    """The eight kinds of change an incremental extract must see; returns the new run's id."""
    uri, runs, experiments = facts.uri, facts.run_ids, facts.experiment_ids
    client = MlflowClient(uri)
    # 1. a new run
    new_run = log_run(client, experiments["alpha"], "new run", metrics={"mse": 1.0})
    # 2. a finished run reopened to log a metric (the article's tip 1)
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=runs["plain"]):
            mlflow.log_metric("r2", 0.75)
        # 3. a child added to an old parent (the article's tip 4)
        with (
            mlflow.start_run(run_id=runs["root"]),
            mlflow.start_run(run_name="late child", nested=True),
        ):
            mlflow.log_param("alpha", "0.2")
    finally:
        mlflow.set_tracking_uri(None)
    # 4. a run deleted, 5. a run restored, 6. a RUNNING run finishes, 7. an experiment renamed
    client.delete_run(runs["unicode"])
    client.restore_run(runs["failed"])
    client.set_terminated(runs["running"], status="FINISHED")
    client.rename_experiment(experiments["beta"], "beta renamed")
    # 8. a zombie marked KILLED with update_run, which leaves its end time empty
    client.update_run(zombie, status="KILLED")
    return new_run


def test_incremental_without_a_warehouse_is_a_full_extract(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", facts.uri, "--db", str(db), "--incremental")
    assert result.exit_code == 0, result.output
    assert "doing a full extract" in result.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select mode, runs_seen from extract_log").fetchall() == [("full", 10)]


def test_parallel_extract_equals_serial(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    client = MlflowClient(facts.uri)
    for name in ("e1", "e2", "e3"):
        experiment_id = client.create_experiment(name)
        for i in range(25):
            log_run(client, experiment_id, f"{name}-{i}", params={"i": str(i)}, metrics={"m": i})
    serial, parallel = tmp_path / "serial.duckdb", tmp_path / "parallel.duckdb"
    extract(facts.uri, serial, "--workers", "1", "--metric-history")
    extract(facts.uri, parallel, "--workers", "3", "--page-size", "7", "--metric-history")
    assert table_contents(serial) == table_contents(parallel)
    con = duckdb.connect(str(parallel), read_only=True)
    assert con.execute("select count(*) from runs").fetchone() == (85,)
    # 4 points of "plain" (mse, 3 x loss), 3 odd metrics, 1 r2, 75 x m
    assert con.execute("select count(*) from metric_history").fetchone() == (83,)


def test_extract_mode_from_the_environment(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    extract(facts.uri, db)
    env = {"RUNREPORT_EXTRACT_MODE": "incremental"}
    result = run_cli("extract", "--tracking-uri", facts.uri, "--db", str(db), env=env)
    assert result.exit_code == 0, result.output
    result = run_cli("extract", "--tracking-uri", facts.uri, "--db", str(db), "--full", env=env)
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(db), read_only=True)
    modes = con.execute("select mode from extract_log order by extract_id").fetchall()
    assert modes == [("full",), ("incremental",), ("full",)]
    con.close()
    bad = run_cli(
        "extract",
        "--tracking-uri",
        facts.uri,
        "--db",
        str(db),
        env={"RUNREPORT_EXTRACT_MODE": "sometimes"},
    )
    assert bad.exit_code == 2
    assert "RUNREPORT_EXTRACT_MODE is 'sometimes'" in bad.output
