"""Issue 23, item 11: a driver's or the system's error is one line naming the problem, the
path and the fix, and what the user had is left as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etl.errors import driver_message
from tests.conftest import StoreFacts, new_store, run_cli
from tests.test_extract import assert_one_line_error
from tests.test_warehouse_safety import fill, small_disk  # noqa: F401  (a fixture)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.pure
def test_item11_duckdbs_json_detail_becomes_its_words() -> None:
    raw = (
        'IO Error: Async write failed for range [offset=0, size=185]: {"exception_type":"IO",'
        '"exception_message":"Could not write file \\"lake/runs/data_0.parquet\\": No space '
        'left on device","errno":"28"}'
    )
    assert driver_message(Exception(raw)) == (
        "IO Error: Async write failed for range [offset=0, size=185]: Could not write file "
        '"lake/runs/data_0.parquet": No space left on device'
    )
    assert driver_message(Exception("")) == "Exception"
    assert driver_message(Exception("Catalog Error: {not json}")) == "Catalog Error: {not json}"


@pytest.mark.pure
@pytest.mark.parametrize("command", ["sql", "report"])
def test_item11_a_db_that_is_an_sqlite_file_is_named_so(command: str, tmp_path: Path) -> None:
    """`--db mlflow.db` (the store given where the warehouse goes): one line, exit 2, and
    the SQLite file untouched."""
    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as con:
        con.execute("create table runs (run_uuid varchar)")
    before = digest(store)
    args = {
        "sql": ["sql", "--db", str(store), "select 1"],
        "report": ["report", "--db", str(store), "--out", str(tmp_path / "r")],
    }[command]
    result = run_cli(*args)
    assert_one_line_error(
        result, 2, f"{store}: it is an SQLite database", f"--tracking-uri sqlite:///{store}"
    )
    assert digest(store) == before
    assert not (tmp_path / "r").exists()


def test_item11_an_extract_into_an_sqlite_file_leaves_it_whole(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("create table kept (value varchar)")
    before = digest(other)
    uri = new_store(tmp_path)
    result = run_cli("extract", "--db", str(other), "--tracking-uri", uri)
    assert_one_line_error(result, 2, f"{other}: it is an SQLite database")
    assert digest(other) == before


def test_item11_a_report_on_a_full_disk_names_the_folder_and_keeps_the_old_one(
    rich_store: StoreFacts,
    small_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(db)).exit_code == 0
    out = small_disk / "report"
    assert run_cli("report", "--db", str(db), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    filler = fill(small_disk, 0)

    result = run_cli("report", "--db", str(db), "--out", str(out))
    assert_one_line_error(
        result, 1, f"writing {out} failed: No space left on device", f"{out} is unchanged"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "report"]
    filler.unlink()


def test_item11_search_runs_on_a_locked_sqlite_store_is_one_line_within_the_timeout(
    rich_store: StoreFacts, tmp_path: Path
) -> None:
    store = tmp_path / "locked.db"
    store.write_bytes(Path(rich_store.uri.removeprefix("sqlite:///")).read_bytes())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"con = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
            "con.execute('begin exclusive'); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = run_cli(
            "extract",
            "--via",
            "search_runs",
            "--tracking-uri",
            f"sqlite:///{store}",
            "--db",
            str(tmp_path / "runs.duckdb"),
            env={"RUNREPORT_TRACKING_TIMEOUT": "2"},
        )
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(
        result, 1, f"sqlite:///{store} failed: database is locked", "tracking.timeout_seconds"
    )
    assert took < 30
    assert not (tmp_path / "runs.duckdb").exists()


def test_item11_an_eml_on_a_full_disk_names_the_file_and_keeps_the_old_one(
    rich_store: StoreFacts,
    small_disk: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.duckdb"
    assert run_cli("extract", "--tracking-uri", rich_store.uri, "--db", str(db)).exit_code == 0
    eml = small_disk / "report.eml"
    args = ("email", "--db", str(db), "--out", str(tmp_path / "r"), "--to", "lead@example.com")
    assert run_cli(*args, "--dry-run", str(eml)).exit_code == 0
    before = eml.read_bytes()
    filler = fill(small_disk, 0)

    result = run_cli(*args, "--dry-run", str(eml))
    assert_one_line_error(result, 1, f"writing {eml} failed: No space left on device")
    assert eml.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "report.eml"]
    filler.unlink()
