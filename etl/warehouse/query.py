"""`runreport sql`: one query against the warehouse, opened read-only, printed as a table,
CSV or JSON.

Nothing a query says can change the warehouse: the file is opened with
`read_only=True` (INSERT, UPDATE, DELETE, CREATE, DROP, ATTACH ... as writable fail) and
with external access off, so no query can attach, read or write another file (COPY TO,
ATTACH, read_csv of a path) or load an extension; the configuration is then locked.

Values: NULL is an empty CSV cell and JSON null; timestamps, dates and times are ISO 8601
(timestamps in UTC, with their offset); NaN, +inf and -inf are written as the strings
"NaN", "Infinity" and "-Infinity" in CSV, JSON and the table alike (JSON has no number
for them); DECIMAL is a JSON number; lists and structs are JSON arrays and objects (JSON
text in a CSV cell); intervals and UUIDs are text; blobs are hex.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import duckdb

from etl.errors import ConfigError, JobFailed

FETCH_ROWS = 10_000
TABLE_ROW_LIMIT = 1_000  # a terminal table longer than this is no use; CSV has them all
SCHEMA_QUERY = """
select
    columns.table_name as name,
    case tables.table_type when 'VIEW' then 'view' else 'table' end as kind,
    columns.column_name,
    columns.data_type
from information_schema.columns as columns
inner join information_schema.tables as tables
    on tables.table_catalog = columns.table_catalog
    and tables.table_schema = columns.table_schema
    and tables.table_name = columns.table_name
where columns.table_catalog = current_database() and columns.table_schema = 'main'
order by kind, name, columns.ordinal_position
"""


def print_query(db: Path, query: str, fmt: str) -> None:
    with open_warehouse(db) as con:
        columns, batches = run_query(con, query)
        write_result(columns, batches, fmt)


def print_schema(db: Path, fmt: str) -> None:
    """Every table and view of the warehouse, one row per column."""
    with open_warehouse(db) as con:
        columns, batches = run_query(con, SCHEMA_QUERY)
        write_result(columns, batches, fmt)


class open_warehouse:
    """A read-only connection with external access off, closed on exit."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        if not self.db.is_file():
            raise ConfigError(
                f"no warehouse at {self.db}",
                "Run runreport extract first, or point --db at the warehouse file",
            )
        try:
            con = duckdb.connect(
                str(self.db),
                read_only=True,
                config={"enable_external_access": False},
            )
            # icu is built in but loads lazily; time zones need it before the lock
            con.execute("load icu")
            con.execute("set TimeZone = 'UTC'")
            con.execute("set lock_configuration = true")
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():  # another program has it open for writing
                raise JobFailed(
                    f"the warehouse {self.db} is open for writing in another program",
                    "Close it there (a duckdb shell?) and try again",
                ) from exc
            raise ConfigError(
                f"cannot open the warehouse {self.db}: {exc}",
                "Point --db at a warehouse made by runreport extract",
            ) from exc
        except duckdb.Error as exc:
            raise JobFailed(f"cannot open the warehouse {self.db}: {exc}") from exc
        self.con = con
        return con

    def __exit__(self, *exc_info: object) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


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
    click.echo(_csv_lines([columns]), nl=False)
    for rows in batches:
        click.echo(_csv_lines([[text_value(value) for value in row] for row in rows]), nl=False)


def _csv_lines(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_json(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
    """A list of objects, streamed: '[', one object per line, ']'."""
    separator = "[\n"
    for rows in batches:
        lines = []
        for row in rows:
            record = {name: json_value(value) for name, value in zip(columns, row, strict=True)}
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False))
        click.echo(separator + ",\n".join(lines), nl=False)
        separator = ",\n"
    click.echo("[]" if separator == "[\n" else "\n]")


def write_table(columns: list[str], batches: Iterator[list[tuple[Any, ...]]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, header_style="bold")
    for column in table.columns:
        column.overflow = "fold"  # wrap long values rather than cut them off
    shown = 0
    more = False
    for rows in batches:
        for row in rows:
            if shown == TABLE_ROW_LIMIT:
                more = True
                break
            # Text, not str: a run name like "[red]x" must not be read as rich markup
            table.add_row(
                *(Text("NULL", style="dim") if v is None else Text(text_value(v)) for v in row)
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


def text_value(value: Any) -> str:
    """One value as CSV and table cells show it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(json_value(value), ensure_ascii=False, allow_nan=False)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def json_value(value: Any) -> Any:
    """One value as JSON can hold it; see the module docstring."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _float_text(value)
    if isinstance(value, Decimal):
        return json_value(float(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # UUID, interval, ...


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)
