"""`runreport report --since`: a day no run can have started on is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ERROR_STAMP, run_cli, unstamped


@pytest.mark.parametrize("since", ["2999-01-01", "0001-01-01"])
def test_item13_a_since_no_run_can_have_started_on_is_refused(since: str, tmp_path: Path) -> None:
    """Issue 23, item 13: a future --since was accepted silently, 0001-01-01 overflowed."""
    db = tmp_path / "runs.duckdb"
    result = run_cli("report", "--db", str(db), "--out", str(tmp_path / "r"), "--since", since)
    assert result.exit_code == 2, result.output
    last = unstamped(result.output).strip().splitlines()[-1]
    assert last.startswith(f"runreport: error: --since {since} is not a day runs can have")
    assert not (tmp_path / "r").exists()


def test_an_error_line_carries_the_time_as_log_lines_do(tmp_path: Path) -> None:
    """Issue 22: cron logs interleave INFO and error lines; both say when."""
    db = tmp_path / "runs.duckdb"
    result = run_cli("report", "--db", str(db), "--since", "2999-01-01")
    [line] = [line for line in result.output.splitlines() if "runreport: error:" in line]
    assert ERROR_STAMP.match(line), line
