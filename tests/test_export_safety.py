"""Issue #23, hardening round 3: what `runreport export --parquet DIR` may replace (item
1), a DIR that is a symbolic link (item 7), the temporary folders of killed exports (item
12), and `views --parquet` given a URI (item 13)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.warehouse.atomic import LEFTOVER_AGE_S, OLD_MARK, TMP_MARK, host_name
from tests.conftest import run_cli
from tests.test_export import beside, export, tree_digest, warehouse  # noqa: F401  (a fixture)
from tests.test_extract import assert_one_line_error, digest

ROOT = Path(__file__).resolve().parents[1]
# a writer that holds a temporary export folder open, says where, and waits to be killed
HOLD_OPEN = """
import sys, time
from pathlib import Path
from etl.warehouse.atomic import write_folder
with write_folder(Path(sys.argv[1])) as work:
    (work / "data_0.parquet").write_bytes(b"x" * 100_000)
    print(work, flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lake(warehouse: Path, tmp_path: Path) -> Path:  # noqa: F811
    folder = tmp_path / "lake"
    result = export(warehouse, folder)
    assert result.exit_code == 0, result.output
    return folder


def test_item1_export_never_deletes_a_folder_it_did_not_write(
    warehouse: Path,  # noqa: F811
    lake: Path,
) -> None:
    # the report's repro: the warehouse moved into an earlier export, then exported there
    moved = lake / "runs.duckdb"
    shutil.copy(warehouse, moved)
    before = tree_digest(lake)
    result = export(moved, lake)
    assert_one_line_error(result, 2, f"warehouse {moved}", str(lake), "does not hold the warehouse")
    assert tree_digest(lake) == before and digest(moved) == digest(warehouse)
    assert beside(lake) == []
    moved.unlink()

    # a file the user put in the export, at the top or inside a table folder
    for extra in (lake / "notes.txt", lake / "runs" / "notes.txt"):
        extra.write_text("mine")
        before = tree_digest(lake)
        result = export(warehouse, lake)
        assert_one_line_error(result, 2, extra.name, "did not write", "_manifest.json", "Move")
        assert tree_digest(lake) == before
        assert beside(lake) == []
        extra.unlink()

    # a folder named like a table the manifest does not list
    (lake / "backup").mkdir()
    assert_one_line_error(export(warehouse, lake), 2, "backup", "did not write")
    (lake / "backup").rmdir()

    # only what runreport wrote: replaced whole, as before
    result = export(warehouse, lake)
    assert result.exit_code == 0, result.output


def test_item1_an_unreadable_manifest_is_refused(warehouse: Path, lake: Path) -> None:  # noqa: F811
    (lake / "_manifest.json").write_text("{not json")
    before = tree_digest(lake)
    result = export(warehouse, lake)
    assert_one_line_error(result, 2, "_manifest.json", "replaces the whole folder")
    assert tree_digest(lake) == before


def test_item7_a_link_to_an_export_is_followed_and_kept(
    warehouse: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    real = tmp_path / "exports" / "v1"
    real.parent.mkdir()
    assert export(warehouse, real).exit_code == 0
    stale = real / "runs" / "experiment_id=999"
    stale.mkdir()
    (stale / "data_0.parquet").write_bytes(b"old")
    link = tmp_path / "lake"
    link.symlink_to(real, target_is_directory=True)

    result = export(warehouse, link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert not stale.exists()  # the folder the link points to holds the new export
    assert json.loads((link / "_manifest.json").read_text())["tables"]
    assert beside(real) == [] and beside(link) == []

    # a link to a folder that is not an export is refused like that folder
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    link.unlink()
    link.symlink_to(other)
    assert_one_line_error(export(warehouse, link), 2, str(other), "new or empty folder")
    assert (other / "notes.txt").read_text() == "mine" and link.is_symlink()


def hold_open(out: Path) -> tuple[subprocess.Popen[str], Path]:
    """A real process writing a temporary folder for `out`, and that folder."""
    writer = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    return writer, Path(writer.stdout.readline().strip())


@pytest.fixture
def writers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for writer in started:
        writer.kill()
        writer.wait()


def test_item12_the_next_export_removes_what_a_killed_one_left(
    warehouse: Path,  # noqa: F811
    lake: Path,
    writers: list[subprocess.Popen[str]],
) -> None:
    killed, left = hold_open(lake)
    live, running = hold_open(lake)
    writers += [killed, live]
    assert TMP_MARK in left.name and f"{killed.pid}@{host_name()}" in left.name
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    aside = lake.parent / left.name.replace(TMP_MARK, OLD_MARK)  # a swap killed midway
    shutil.copytree(left, aside)
    # no writer named: another host's, or an older runreport's; young, so it may be running
    unknown = lake.parent / f".lake{TMP_MARK}abc123"
    unknown.mkdir()
    assert left.is_dir() and running.is_dir()

    result = export(warehouse, lake)
    assert result.exit_code == 0, result.output
    assert not left.exists() and not aside.exists()  # a writer that no longer runs
    assert running.is_dir() and live.poll() is None  # never one that still runs
    assert unknown.is_dir()

    old = time.time() - LEFTOVER_AGE_S - 60
    os.utime(unknown, (old, old))
    assert export(warehouse, lake).exit_code == 0
    assert not unknown.exists() and running.is_dir()


def test_item12_this_process_pid_from_an_earlier_process_is_stale(
    warehouse: Path,  # noqa: F811
    lake: Path,
) -> None:
    # in a container every run may get the same pid: a folder named with ours that this
    # process is not writing was left by an earlier process
    left = lake.parent / f".lake{TMP_MARK}{os.getpid()}@{host_name()}-k1ll3d"
    left.mkdir()
    assert export(warehouse, lake).exit_code == 0
    assert not left.exists()


def test_item13_views_refuse_a_parquet_uri_in_one_line() -> None:
    for uri in ("s3://bucket/lake/runreport", "gs://b/lake", "abfss://c@a.dfs.core.windows.net/x"):
        result = run_cli("views", "--dialect", "spark", "--parquet", uri)
        # (user info in a URI, as abfss' container@account, is redacted in every message)
        shown = uri.rsplit("@", 1)[-1]
        assert_one_line_error(result, 2, uri[:5], shown, "on this machine", "local folder")
