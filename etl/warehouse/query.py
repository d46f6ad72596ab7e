"""`runreport sql`: one query against the warehouse, opened read-only, printed as a table,
CSV or JSON.

Nothing a query says can change the warehouse: the file is opened with
`read_only=True` (INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH ... as writable fail) and
with external access off, so no query can attach, read or write another file (COPY TO,
ATTACH, read_csv of a path) or load an extension; the configuration is then locked.

Values become text by the one rule of etl/values.py, as in the report's CSVs: NULL is an
empty CSV cell and JSON null; timestamps ISO 8601 in UTC; NaN, +inf and -inf (and MLflow's
±1.7976931348623157e308 stand-in for them) are "NaN", "Infinity" and "-Infinity"; no CSV
cell is read as a formula by a spreadsheet.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import duckdb

from etl.errors import ConfigError, JobFailed
from etl.values import cell, safe_text, to_json, to_text
from etl.warehouse.connect import open_warehouse
from etl.warehouse.descriptions import description
from etl.warehouse.settings import ViewSettings, apply_settings

FETCH_ROWS = 10_000
TABLE_ROW_LIMIT = 1_000  # a terminal table longer than this is no use; CSV has them all
# C0 and C1 control characters but newline: escape sequences in a run name must not reach
# the terminal
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
RELATIONS_QUERY = """
select
    table_name as name,
    case table_type when 'VIEW' then 'view' else 'table' end as kind
from information_schema.tables
where table_catalog = current_database() and table_schema = 'main'
order by kind, name
"""
COLUMNS_QUERY = """
select column_name, data_type
from information_schema.columns
where table_catalog = current_database() and table_schema = 'main' and table_name = ?
order by ordinal_position
"""


def print_query(
    db: Path,
    query: str,
    fmt: str,
    timeout: float | None = None,
    settings: ViewSettings | None = None,
) -> None:
    """Print the query's result; `settings` (a --config's) apply to the views first."""
    with _warehouse(db, settings) as con, _deadline(con, timeout):
        columns, batches = run_query(con, query)
        write_result(columns, batches, fmt)


def print_schema(db: Path, fmt: str, name: str | None = None) -> None:
    """Every table and view of the warehouse, one row each with what it holds (the
    contract's sentence); with `name`, that one's columns (in a table, under its sentence)."""
    with _warehouse(db) as con:
        relations = {rel: kind for rel, kind in con.execute(RELATIONS_QUERY).fetchall()}
        if name is None:
            rows = [(rel, kind, description(rel)) for rel, kind in relations.items()]
            write_result(["name", "kind", "holds"], iter([rows]), fmt)
            return
        found = next((rel for rel in relations if rel.lower() == name.lower()), None)
        if found is None:
            close = difflib.get_close_matches(name.lower(), relations, n=1)
            raise ConfigError(
                f"the warehouse has no table or view {name!r}",
                f"Did you mean {close[0]}?" if close else "runreport sql --schema lists them",
            )
        if fmt == "table":
            holds = description(found)
            click.echo(f"{found} ({relations[found]}){': ' + holds if holds else ''}")
        columns = con.execute(COLUMNS_QUERY, [found]).fetchall()
        write_result(["column_name", "data_type"], iter([columns]), fmt)


@contextlib.contextmanager
def _warehouse(
    db: Path, settings: ViewSettings | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse read-only (see etl.warehouse.connect), its configuration locked."""
    con = open_warehouse(db)
    try:
        if settings is not None:
            apply_settings(con, settings)  # temp tables the views read instead of the file's
        con.execute("set lock_configuration = true")
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def _deadline(con: duckdb.DuckDBPyConnection, timeout: float | None) -> Iterator[None]:
    """Interrupt the query after `timeout` seconds: a one-line JobFailed."""
    if timeout is None:
        yield
        return
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        yield
    except JobFailed as exc:
        if isinstance(exc.__cause__, duckdb.InterruptException):
            raise JobFailed(
                f"query stopped after {timeout:g} s (--timeout)",
                "Narrow it (a where clause, a limit) or give it a longer --timeout",
            ) from exc
        raise
    finally:
        timer.cancel()


def run_query(
    con: duckdb.DuckDBPyConnection, query: str
) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
    """Column names and the rows in batches; DuckDB's message on any failure."""
    try:
        cursor = con.execute(query)
    except duckdb.Error as exc:
        raise JobFailed(f"query failed: {exc}", _hint(exc)) from exc
    if cursor.description is None:  # a statement without a result
        return [], iter(())
    columns = [description[0] for description in cursor.description]

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        while True:
            try:
                rows = cursor.fetchmany(FETCH_ROWS)
            except duckdb.Error as exc:  # errors found while executing, e.g. a bad cast
                raise JobFailed(f"query failed: {exc}", _hint(exc)) from exc
            if not rows:
                return
            yield rows

    return columns, batches()


def _hint(exc: duckdb.Error) -> str:
    if "read-only mode" in str(exc):
        return "runreport sql only reads; runreport extract rebuilds the warehouse"
    if isinstance(exc, duckdb.PermissionException):
        return "runreport sql reads the warehouse only, no other file"
    return "runreport sql --schema lists the tables, views and their columns"


def write_result(columns: list[str], batches: Iterator[list[tuple[Any, ...]]], fmt: str) -> None:
    if not columns:
        return
    writers = {"csv": write_csv, "json": write_json, "table": write_table}
    writers[fmt](columns, batches)


def write_csv(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
    click.echo(_csv_lines([[safe_text(name) for name in columns]]), nl=False)
    for rows in batches:
        click.echo(_csv_lines([[cell(value) for value in row] for row in rows]), nl=False)


def _csv_lines(rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_json(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
    """A list of objects, streamed: '[', one object per line, ']'."""
    separator = "[\n"
    for rows in batches:
        lines = []
        for row in rows:
            record = {name: to_json(value) for name, value in zip(columns, row, strict=True)}
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
        click.echo(separator + ",\n".join(lines), nl=False)
        separator = ",\n"
    click.echo("[]" if separator == "[\n" else "\n]")


def write_table(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
    # rich only for the table format: csv and json output never draw one
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    headers = [Column(header=Text(printable(name))) for name in columns]
    table = Table(*headers, header_style="bold")
    shown = 0
    more = False
    for rows in batches:
        for row in rows:
            if shown == TABLE_ROW_LIMIT:
                more = True
                break
            if shown == 0:
                _set_wrapping(table, row)
            # Text, not str: a run name like "[red]x" must not be read as rich markup
            table.add_row(
                *(
                    Text("NULL", style="dim") if v is None else Text(printable(to_text(v)))
                    for v in row
                )
            )
            shown += 1
        if more:
            break
    console = Console(file=sys.stdout)
    console.print(table)
    if more:
        click.echo(
            f"runreport: showing the first {TABLE_ROW_LIMIT:,} rows; "
            "use --format csv or json (or a limit) for all of them",
            err=True,
        )


def _set_wrapping(table: Any, row: tuple[Any, ...]) -> None:
    """Text columns wrap long values; run ids, numbers and times are never broken."""
    for column, value in zip(table.columns, row, strict=True):
        if isinstance(value, str) and not _looks_like_an_id(value):
            column.overflow = "fold"
        else:
            column.no_wrap = True


def _looks_like_an_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def printable(text: str) -> str:
    """Control characters (escape sequences) shown as \\xNN, never sent to the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
