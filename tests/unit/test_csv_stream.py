"""The streamed CSV writer (issue #26) writes exactly what the row-by-row one writes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from etl.report import csv_export
from etl.report.csv_export import view_query, write_csv, write_query_csv

TRICKY = """
select * from (values
    (1::bigint, '=SUM(A1)', 1.5::double, timestamptz '2026-01-13 06:02:11.5+00',
     1.25::decimal(5,2), [1, 2], true, 'plain', date '2026-01-02', 7::integer),
    (null, '-1.5', 'nan'::double, timestamptz '2026-01-13 06:02:11+00',
     null, null, false, '+x', null, null),
    (-3, '@me', 'inf'::double, null, 0.5, [], null, 'a,b "c"' || chr(10) || 'd', null, 2),
    (4, null, 1.7976931348623157e308, null, null, null, null, '', null, null),
    (5, chr(9) || 'tab', -1.7976931348623157e308, null, null, null, null, '-', null, null),
    (6, '٣', 1e16, null, null, null, null, '-٣', null, null),
    (7, 'x', 0.1, null, null, null, null, '=1', null, null)
) as t(i, s, d, ts, dec, l, b, s2, day, small)
"""


@pytest.mark.pure
@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_streamed_csv_equals_the_row_by_row_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(csv_export, "BATCH_ROWS", batch)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    cursor = con.execute(TRICKY)
    columns = [item[0] for item in cursor.description]
    rows = cursor.fetchall()
    write_csv(tmp_path / "rows.csv", columns, rows)
    assert write_query_csv(tmp_path / "streamed.csv", con.execute(TRICKY)) == 7
    expected = (tmp_path / "rows.csv").read_bytes()
    assert (tmp_path / "streamed.csv").read_bytes() == expected
    assert b"'=SUM(A1)" in expected and b"NaN" in expected and b"-Infinity" in expected


@pytest.mark.pure
def test_an_empty_query_writes_the_header_only(tmp_path: Path) -> None:
    con = duckdb.connect()
    written = write_query_csv(tmp_path / "empty.csv", con.execute("select 1 as a where false"))
    assert written == 0
    assert (tmp_path / "empty.csv").read_bytes() == b"a\r\n"


@pytest.mark.pure
def test_timestamps_formatted_by_duckdb_read_as_pythons_isoformat(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        "create view times as select * from (values "
        "(timestamptz '2026-01-13 06:02:11+00', 1), (timestamptz '2026-01-13 06:02:11.5+00', 2), "
        "(timestamptz '2026-01-13 06:02:11.000123+00', 3), "
        "(timestamptz '1969-12-31 23:59:59.25+00', 4), "
        '(null, 5)) as t("start time", n)'
    )
    assert "strftime" in view_query(con, "times")
    rows = con.execute("select * from times").fetchall()
    write_csv(tmp_path / "rows.csv", ["start time", "n"], rows)
    assert write_query_csv(tmp_path / "sql.csv", con.execute(view_query(con, "times"))) == 5
    assert (tmp_path / "sql.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()
    assert b"2026-01-13T06:02:11.500000+00:00" in (tmp_path / "rows.csv").read_bytes()
