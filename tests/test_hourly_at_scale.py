"""Issue 23, item 0: the hourly incremental extract of a 120,000-run warehouse ran out of
memory ("failed to pin block of size 256.0 KiB" at a limit sized from the file). The
repro shape, on the generated store (tests/perf/make_store.py, cached in the test cache
because making it takes about a minute): 120,000 runs in 50 experiments, a full extract,
then 1% new runs with fresh start times, then `extract --incremental`."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli
from tests.old_mlflow import cache
from tests.perf.make_store import add_runs, cached_store

RUNS, EXPERIMENTS, NEW_RUNS = 120_000, 50, 1_200


@pytest.fixture(scope="module")
def store_120k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cached, _ = cached_store(RUNS, EXPERIMENTS, cache_dir=cache() / "stores")
    copy = tmp_path_factory.mktemp("hourly") / "mlflow.db"
    shutil.copyfile(cached, copy)
    return copy


def store_runs(store: Path) -> int:
    with sqlite3.connect(store) as con:
        return int(con.execute("select count(*) from runs").fetchone()[0])


def test_item0_the_hourly_incremental_of_121200_runs_succeeds(
    store_120k: Path, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    uri = f"sqlite:///{store_120k}"
    full = run_cli("extract", "--via", "sql", "--tracking-uri", uri, "--db", str(db))
    assert full.exit_code == 0, full.output
    add_runs(store_120k, NEW_RUNS)
    assert store_runs(store_120k) == RUNS + NEW_RUNS

    hourly = run_cli(
        "extract", "--incremental", "--via", "sql", "--tracking-uri", uri, "--db", str(db)
    )
    assert hourly.exit_code == 0, hourly.output
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from runs").fetchone() == (RUNS + NEW_RUNS,)
        last = con.execute(
            "select mode, status, warnings from extract_log order by extract_id desc limit 1"
        ).fetchone()
    assert last == ("incremental", "ok", 0)
