"""The report's CSV files: UTF-8, a header row, cells by etl/values.py's rule (no cell a
spreadsheet reads as a formula; NaN, Infinity, -Infinity).

`write_query_csv` streams a query's rows in batches, so a view of a million runs never
sits whole in Python; each column gets the converter its DuckDB type needs (the same
`cell` rule, with fast paths for the plain types: an integer or a text that cannot be a
formula is written as it is).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from etl.values import FLOAT_MAX, FORMULA_STARTS, cell, safe_text

FORMULA_FIRST = frozenset(FORMULA_STARTS)

BATCH_ROWS = 20_000
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT"}
INTEGER_TYPES |= {"UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT"}


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write the rows; returns how many were written."""
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_text(name) for name in columns])
        for row in rows:
            writer.writerow([cell(value) for value in row])
            written += 1
    return written


def write_query_csv(path: Path, cursor: duckdb.DuckDBPyConnection) -> int:
    """Write the rows of an executed query, `BATCH_ROWS` at a time; returns how many."""
    columns = [item[0] for item in cursor.description or []]
    converters = [converter(str(item[1])) for item in cursor.description or []]
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_text(name) for name in columns])
        while rows := cursor.fetchmany(BATCH_ROWS):
            converted = [
                convert(values) if convert is not None else values
                for convert, values in zip(converters, zip(*rows, strict=True), strict=True)
            ]
            writer.writerows(zip(*converted, strict=True))
            written += len(rows)
    return written


def converter(duckdb_type: str) -> Callable[[Sequence[Any]], list[Any]] | None:
    """How a column of this type becomes cells (None: as it is)."""
    if duckdb_type in INTEGER_TYPES:
        return None  # the csv module writes ints and None as cell() does
    if duckdb_type == "VARCHAR":
        return text_cells
    if duckdb_type == "DOUBLE":
        return lambda values: list(map(double_cell, values))
    return lambda values: list(map(cell, values))


def iso_utc_text(column: str) -> str:
    """SQL for a TIMESTAMPTZ column as the text `datetime.isoformat()` gives it in UTC
    (microseconds only when there are some): formatted by DuckDB, not Python, at a
    million rows. For a connection whose TimeZone is UTC."""
    micros = f"((epoch_us({column}) % 1000000) + 1000000) % 1000000"
    return (
        f"strftime({column}, '%Y-%m-%dT%H:%M:%S') || case when {micros} <> 0 "
        f"then '.' || lpad(cast({micros} as varchar), 6, '0') else '' end || '+00:00'"
    )


def view_query(con: duckdb.DuckDBPyConnection, view: str) -> str:
    """`select * from view`, with its TIMESTAMPTZ columns as text (iso_utc_text) when the
    connection's TimeZone is UTC."""
    zone = con.execute("select current_setting('TimeZone')").fetchone()
    described = con.execute(f"select * from {view} limit 0").description or []
    columns = []
    for name, kind, *_ in described:
        quoted = '"' + str(name).replace('"', '""') + '"'
        if str(kind) == "TIMESTAMP WITH TIME ZONE" and zone and zone[0] in ("UTC", "Etc/UTC"):
            columns.append(f"{iso_utc_text(quoted)} as {quoted}")
        else:
            columns.append(quoted)
    return f"select {', '.join(columns)} from {view}"


def text_cells(values: Sequence[str | None]) -> list[str | None]:
    return [safe_text(v) if v and v[0] in FORMULA_FIRST else v for v in values]


def double_cell(value: float | None) -> object:
    if value is None:
        return None
    if -FLOAT_MAX < value < FLOAT_MAX:
        return repr(value)
    return cell(value)  # NaN, ±inf and MLflow's ±inf stand-in
