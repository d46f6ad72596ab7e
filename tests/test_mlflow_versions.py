"""The morning after an MLflow upgrade: stores written by older and newer MLflow versions
(their own packages, tests/old_mlflow.py) are extracted by the default path, equal to the
same store upgraded and read through search_runs, and never changed by runreport."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from etl.extract.open_source import mlflow_head_revision
from tests.conftest import StoreFacts, require, run_cli
from tests.old_mlflow import NEWEST, missing, store_written_by, upgrade_with
from tests.test_incremental import table_contents

RUN_TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "metrics",
    "tags",
    "datasets",
    "run_inputs",
)
HEADS = {"2.16.2": "4465047574b1", "3.0.1": "bda7b8c39065"}


def store_file(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def revision(uri: str) -> str:
    con = sqlite3.connect(f"file:{store_file(uri)}?mode=ro", uri=True)
    try:
        return str(con.execute("select version_num from alembic_version").fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module", params=sorted(HEADS))
def old_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store written by an older MLflow (its URI), shared by the module's tests, which
    only read it."""
    version: str = request.param
    require(f"MLflow {version}", missing(version))
    uri = store_written_by(version, tmp_path_factory.mktemp(f"mlflow-{version}"))
    assert revision(uri) == HEADS[version]
    return uri


def test_the_default_extract_reads_an_older_store_and_never_changes_it(
    old_store: str, tmp_path: Path
) -> None:
    before = digest(store_file(old_store))
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", old_store, "--db", str(db))
    assert result.exit_code == 0, result.output
    assert f"schema revision {revision(old_store)}" in result.output
    assert "reading its tables directly" in result.output
    assert digest(store_file(old_store)) == before
    folder = store_file(old_store).parent
    assert not list(folder.glob("*-journal")) and not list(folder.glob("*-wal"))
    contents = table_contents(db, ("runs", "experiments", "run_inputs"))
    assert len(contents["runs"][1]) == 8 and len(contents["experiments"][1]) == 3
    assert len(contents["run_inputs"][1]) == 1


def test_search_runs_on_an_older_store_is_refused_naming_both_revisions(
    old_store: str, tmp_path: Path
) -> None:
    before = digest(store_file(old_store))
    db = tmp_path / "runs.duckdb"
    args = ("extract", "--via", "search_runs", "--tracking-uri", old_store, "--db", str(db))
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert revision(old_store) in last and mlflow_head_revision() in last
    assert "would migrate it" in last and "--via sql" in last
    assert digest(store_file(old_store)) == before
    assert not db.exists()


def test_an_older_store_reads_as_the_same_store_upgraded(old_store: str, tmp_path: Path) -> None:
    """The oracle: MLflow's own migration to the installed head, then search_runs."""
    upgraded = tmp_path / "upgraded" / "mlflow.db"
    upgraded.parent.mkdir()
    shutil.copyfile(store_file(old_store), upgraded)
    MlflowClient(f"sqlite:///{upgraded}").search_experiments()  # migrates the copy
    assert revision(f"sqlite:///{upgraded}") == mlflow_head_revision()
    by_tables, by_mlflow = tmp_path / "tables.duckdb", tmp_path / "mlflow.duckdb"
    assert run_cli("extract", "--tracking-uri", old_store, "--db", str(by_tables)).exit_code == 0
    result = run_cli(
        "extract", "--via", "search_runs", "--tracking-uri", f"sqlite:///{upgraded}",
        "--db", str(by_mlflow),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert table_contents(by_tables, RUN_TABLES) == table_contents(by_mlflow, RUN_TABLES)


def test_a_store_the_team_upgraded_past_runreports_mlflow_is_read(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    """The team's server moved to a newer MLflow, whose migrations ran on the store; the
    cron line's runreport, a release behind, reads it the same."""
    require(f"MLflow {NEWEST}", missing(NEWEST))
    newer = tmp_path / "newer" / "mlflow.db"
    newer.parent.mkdir()
    shutil.copyfile(store_file(rich_store.uri), newer)
    upgrade_with(NEWEST, f"sqlite:///{newer}")
    assert revision(f"sqlite:///{newer}") != mlflow_head_revision()
    before = digest(newer)
    now, then = tmp_path / "now.duckdb", tmp_path / "then.duckdb"
    result = run_cli("extract", "--tracking-uri", f"sqlite:///{newer}", "--db", str(now))
    assert result.exit_code == 0, result.output
    assert "reading its tables directly" in result.output
    assert digest(newer) == before
    assert run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(then)).exit_code == 0
    assert table_contents(now, RUN_TABLES) == table_contents(then, RUN_TABLES)
