"""`runreport extract`: the warehouse holds exactly what MLflow returns, and failures
leave the previous warehouse whole."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from tests.conftest import (
    MlflowServer,
    StoreFacts,
    build_rich_store,
    free_port,
    log_run,
    new_store,
    run_cli,
)
from tests.oracle import table_counts
from tests.perf.make_store import generate_store

# a tracking server tried once, not again after a backoff
NO_RETRIES = {"RUNREPORT_TRACKING_RETRIES": "0"}


def extract(uri: str, db: Path, *extra: str):
    return run_cli("extract", "--tracking-uri", uri, "--db", str(db), *extra)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deleted_run_and_deleted_experiment_are_kept(rich_store: StoreFacts, tmp_path: Path):
    db = tmp_path / "runs.duckdb"
    extract(rich_store.uri, db)
    con = duckdb.connect(str(db), read_only=True)
    stages = dict(con.execute("select run_name, lifecycle_stage from runs").fetchall())
    assert stages["deleted"] == "deleted"
    # MLflow 3 marks the runs of a deleted experiment deleted too; they are still extracted
    assert stages["in deleted experiment"] == "deleted"
    gone = con.execute("select lifecycle_stage from experiments where name = 'gone'").fetchone()
    assert gone == ("deleted",)


def test_nan_and_infinite_metrics_are_kept(rich_store: StoreFacts, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(rich_store.uri, db)
    con = duckdb.connect(str(db), read_only=True)
    values = dict(
        con.execute(
            "select key, value from metrics where run_id = ?", [rich_store.run_ids["odd_metrics"]]
        ).fetchall()
    )
    assert values["nan"] != values["nan"]  # NaN
    # SQL stores keep ±inf as ±max float; the warehouse holds what MLflow returns
    returned = MlflowClient(rich_store.uri).get_run(rich_store.run_ids["odd_metrics"])
    assert values["pinf"] == returned.data.metrics["pinf"] > 1e308
    assert values["ninf"] == returned.data.metrics["ninf"] < -1e308


def test_unicode_and_8000_character_tags(rich_store: StoreFacts, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(rich_store.uri, db)
    con = duckdb.connect(str(db), read_only=True)
    tags = dict(
        con.execute(
            "select key, value from tags where run_id = ?", [rich_store.run_ids["unicode"]]
        ).fetchall()
    )
    assert tags["emoji"] == "🚀"
    assert len(tags["long"]) == 7997 and tags["long"].endswith("ünïcødé")
    assert tags["mlflow.runName"] == "日本語 run ✓"


@pytest.mark.server
def test_credentials_never_reach_the_log_or_extract_log(
    served_rich_store: MlflowServer, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    uri = served_rich_store.uri.replace("http://", "http://alice:s3cret@")
    result = extract(uri, db)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    logged = (
        duckdb.connect(str(db), read_only=True)
        .execute("select tracking_uri from extract_log")
        .fetchall()
    )
    assert logged == [(served_rich_store.uri.replace("http://", "http://alice:***@"),)]


def test_more_runs_than_mlflows_default_page(tmp_path: Path) -> None:
    """1,200 runs in one experiment: more than MlflowClient.search_runs' default page of
    1,000 (the benchmark's generator writes them in about a second)."""
    made = generate_store(tmp_path / "many.db", runs=1200, experiments=1, deleted_experiments=0)
    db = tmp_path / "runs.duckdb"
    assert extract(made.uri, db, "--page-size", "1000").exit_code == 0
    assert table_counts(db)["runs"] == 1200


def test_metric_history_only_when_asked(rich_store: StoreFacts, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(rich_store.uri, db)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from metric_history").fetchone() == (0,)
    con.close()
    extract(rich_store.uri, db, "--metric-history")
    con = duckdb.connect(str(db), read_only=True)
    loss = con.execute(
        "select step, value from metric_history where run_id = ? and key = 'loss' order by step",
        [rich_store.run_ids["plain"]],
    ).fetchall()
    assert loss == [(0, 0.9), (1, 0.5), (2, 0.2)]
    # the latest value is the last step, as search_runs reports it
    latest = con.execute(
        "select value, step from metrics where run_id = ? and key = 'loss'",
        [rich_store.run_ids["plain"]],
    ).fetchone()
    assert latest == (0.2, 2)


def test_extract_log_keeps_history_across_full_extracts(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(rich_store.uri, db)
    extract(rich_store.uri, db)
    rows = (
        duckdb.connect(str(db), read_only=True)
        .execute(
            "select extract_id, mode, tracking_uri, runs_seen, experiments_seen, status "
            "from extract_log order by extract_id"
        )
        .fetchall()
    )
    assert rows == [
        (1, "full", rich_store.uri, 10, 4, "ok"),
        (2, "full", rich_store.uri, 10, 4, "ok"),
    ]


def test_legacy_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(str(mlruns))
    experiment_id = client.create_experiment("legacy")
    log_run(client, experiment_id, "old run", params={"a": "1"}, metrics={"m": 2.0})
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")

    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", str(mlruns), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert "MLFLOW_ALLOW_FILE_STORE" in result.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select run_name from runs").fetchall() == [("old run",)]


def test_item6_file_store_folders_mlflow_skips_are_counted_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23, item 6: an experiment or run without meta.yaml was dropped with exit 0,
    warnings = 0 and MLflow's traceback in the cron output."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(str(mlruns))
    kept, lost = client.create_experiment("kept"), client.create_experiment("lost")
    good = log_run(client, kept, "good")
    broken = log_run(client, kept, "no meta")
    for i in range(3):
        log_run(client, lost, f"lost {i}")
    (mlruns / kept / broken / "meta.yaml").unlink()
    (mlruns / lost / "meta.yaml").write_text("")

    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", str(mlruns), "--db", str(db))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, result.output
    assert f"experiment {lost} (3 runs)" in warnings[0]
    assert f"run {broken} of experiment {kept}" in warnings[0]
    assert "Traceback" not in result.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select run_id from runs").fetchall() == [(good,)]
    assert con.execute("select warnings from extract_log").fetchall() == [(2,)]
    con.close()

    # ... and the report lists them under "Needs attention", and in report.json
    out = tmp_path / "report"
    assert run_cli("report", "--db", str(db), "--out", str(out)).exit_code == 0
    notices = json.loads((out / "report.json").read_text(encoding="utf-8"))["extract_notices"]
    assert notices == [warnings[0].split(" WARNING ", 1)[1]]
    page = (out / "index.html").read_text(encoding="utf-8")
    attention = page[page.index('<section id="attention"') :]
    attention = attention[: attention.index("</section>")]
    assert "Left out by the last extract" in attention
    assert f"experiment {lost} (3 runs)" in attention


# --- errors: one line, the fix, non-zero exit, nothing written ---------------------------


@pytest.fixture()
def old_warehouse(rich_store: StoreFacts, tmp_path: Path) -> Path:
    db = tmp_path / "runs.duckdb"
    assert extract(rich_store.uri, db).exit_code == 0
    return db


def assert_one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if "runreport: error:" in line]
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_sqlite_store_is_not_created(old_warehouse: Path, tmp_path: Path) -> None:
    before = digest(old_warehouse)
    typo = tmp_path / "mlfow.db"
    result = run_cli("extract", "--tracking-uri", f"sqlite:///{typo}", "--db", str(old_warehouse))
    assert_one_line_error(result, 2, "no MLflow store", str(typo))
    assert not typo.exists()
    assert digest(old_warehouse) == before


def test_wrong_uri_scheme(old_warehouse: Path) -> None:
    before = digest(old_warehouse)
    result = run_cli(
        "extract", "--tracking-uri", "sqllite:///mlflow.db", "--db", str(old_warehouse)
    )
    assert_one_line_error(result, 2, "unsupported tracking URI scheme 'sqllite'", "sqlite:///")
    assert digest(old_warehouse) == before


def test_unreachable_server(old_warehouse: Path) -> None:
    before = digest(old_warehouse)
    uri = f"http://127.0.0.1:{free_port()}"
    # tried once: the retries and their backoff are tests/test_bad_night.py's
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(old_warehouse), env=NO_RETRIES)
    assert_one_line_error(result, 1, "cannot reach the tracking server", uri)
    assert digest(old_warehouse) == before


def test_unwritable_db_location(rich_store: StoreFacts, tmp_path: Path) -> None:
    db = tmp_path / "no-such-folder" / "runs.duckdb"
    result = extract(rich_store.uri, db)
    assert_one_line_error(result, 2, "no-such-folder", "does not exist")
    assert not db.parent.exists()


def test_reader_of_the_old_file_keeps_reading(old_warehouse: Path, tmp_path: Path) -> None:
    reader = duckdb.connect(str(old_warehouse), read_only=True)
    uri = new_store(tmp_path / "other")
    client = MlflowClient(uri)
    log_run(client, "0", "only run")
    assert extract(uri, old_warehouse, "--allow-shrink").exit_code == 0
    assert reader.execute("select count(*) from runs").fetchone() == (10,)  # the old inode
    # duckdb shares one instance per path inside a process: read afresh from another one
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; print(duckdb.connect(sys.argv[1], "
            "read_only=True).execute('select count(*) from runs').fetchone()[0])",
            str(old_warehouse),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert fresh.stdout.strip() == "1"


def test_sigkill_mid_extract_leaves_the_old_warehouse_whole(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    assert extract(facts.uri, db).exit_code == 0
    old_counts = table_counts(db)
    client = MlflowClient(facts.uri)
    for i in range(300):
        client.create_run(facts.experiment_ids["alpha"], run_name=f"extra {i}")

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "etl",
            "extract",
            "--tracking-uri",
            facts.uri,
            "--db",
            str(db),
            "--page-size",
            "1",
            "--metric-history",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("runs.duckdb.runreport-tmp-*")):
        assert process.poll() is None, "extract ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)  # well into the paging
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert table_counts(db) == old_counts
    assert list(tmp_path.glob("runs.duckdb.runreport-tmp-*")), "the kill left its temp file"
    # the next run is not disturbed by the leftover and cleans it up
    assert extract(facts.uri, db).exit_code == 0
    assert table_counts(db)["runs"] == old_counts["runs"] + 300
    assert not list(tmp_path.glob("runs.duckdb.runreport-tmp-*"))


def test_a_failed_extract_is_logged_by_the_next_success(
    old_warehouse: Path, rich_store: StoreFacts
) -> None:
    before = digest(old_warehouse)
    uri = f"http://bob:hunter2@127.0.0.1:{free_port()}"
    failed = run_cli("extract", "--tracking-uri", uri, "--db", str(old_warehouse), env=NO_RETRIES)
    assert failed.exit_code == 1
    assert "hunter2" not in failed.output
    assert digest(old_warehouse) == before  # the warehouse itself is untouched
    assert extract(rich_store.uri, old_warehouse).exit_code == 0
    rows = (
        duckdb.connect(str(old_warehouse), read_only=True)
        .execute("select extract_id, status, tracking_uri, error from extract_log order by 1")
        .fetchall()
    )
    assert [r[:2] for r in rows] == [(1, "ok"), (2, "failed"), (3, "ok")]
    assert rows[1][2] == uri.replace("hunter2", "***")
    assert "cannot reach the tracking server" in rows[1][3] and "hunter2" not in rows[1][3]
