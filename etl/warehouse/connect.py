"""One way to open the warehouse, and one mapping of DuckDB's errors to runreport's.

Read-only connections have external access and extension loading off (no query can read
another file or fetch an extension) and never spill to disk, so nothing is written beside
the warehouse (DuckDB's default spill folder is `<db>.tmp/`).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from etl.errors import ConfigError, JobFailed, RunreportError
from etl.schema import META_TABLE

READ_ONLY_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "temp_directory": "",
}
BUILD_HINT = "Build it: runreport extract"
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def open_warehouse(path: Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse at `path`, TimeZone UTC; read-only by default.

    Raises ConfigError for a missing file (read-only) or a file that is not a runreport
    warehouse, JobFailed when another program holds it open for writing."""
    existed = path.is_file()
    if read_only and not existed:
        raise ConfigError(f"no warehouse at {path}", BUILD_HINT)
    try:
        con = _connect(path, read_only)
    except duckdb.Error as exc:
        raise warehouse_error(path, exc) from exc
    try:
        # icu is built in but loads lazily (and autoload is off): time zones need it
        con.execute("load icu")
        con.execute("set TimeZone = 'UTC'")
        if existed and not is_warehouse(con):
            raise not_a_warehouse(path)
    except BaseException:
        con.close()
        raise
    return con


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only, config=_config(read_only))
    except duckdb.ConnectionException as exc:
        # This process (a notebook, a test) holds the file open already: DuckDB shares one
        # instance per file and process, with the settings of the first connection.
        if "different configuration" not in str(exc):
            raise
        return duckdb.connect(str(path), read_only=read_only)


def _config(read_only: bool) -> dict[str, str | bool | int | float | list[str]]:
    return dict(READ_ONLY_CONFIG) if read_only else {}


def is_warehouse(con: duckdb.DuckDBPyConnection, database: str | None = None) -> bool:
    """Holds runreport_meta, or (built before it existed) both runs and extract_log."""
    names = table_names(con, database)
    return META_TABLE in names or {"runs", "extract_log"} <= names


def table_names(con: duckdb.DuckDBPyConnection, database: str | None = None) -> set[str]:
    rows = con.execute(
        "select table_name from duckdb_tables() where schema_name = 'main' "
        "and database_name = coalesce(?, current_database())",
        [database],
    ).fetchall()
    return {name for (name,) in rows}


def not_a_warehouse(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} is a DuckDB file but not a runreport warehouse (it has no {META_TABLE} "
        "table, nor runs and extract_log)",
        "Point --db at a warehouse made by runreport extract, or at a new file name",
    )


def warehouse_error(path: Path, exc: duckdb.Error) -> RunreportError:
    """DuckDB's error on opening `path`, as the one-line error runreport prints."""
    text = str(exc)
    if "Could not set lock" in text:
        return held_by_writer(path, text)
    if _is_sqlite_file(path):  # DuckDB then asks for its sqlite extension, which is off
        return ConfigError(
            f"cannot open the warehouse {path}: it is an SQLite database (an MLflow tracking "
            "store?), not a DuckDB warehouse",
            f"Give a store as --tracking-uri sqlite:///{path}, and --db a warehouse made by "
            "runreport extract, or a new file name",
        )
    if "not a valid DuckDB database file" in text:
        return ConfigError(
            f"cannot open the warehouse {path}: it is not a DuckDB file",
            "Point --db at a warehouse made by runreport extract, or at a new file name",
        )
    if isinstance(exc, duckdb.IOException):
        return ConfigError(
            f"cannot open the warehouse {path}: {text.splitlines()[0]}",
            "Point --db at a warehouse made by runreport extract",
        )
    return JobFailed(f"cannot open the warehouse {path}: {text.splitlines()[0]}")


def _is_sqlite_file(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def held_by_writer(path: Path, message: str) -> JobFailed:
    match = _LOCK_HOLDER.search(message)
    holder = f" ({match.group(1)}, PID {match.group(2)})" if match else ""
    return JobFailed(
        f"the warehouse {path} is open for writing in another program{holder}",
        "Close it there, or open it read-only there: duckdb.connect(path, read_only=True); "
        "then try again",
    )


def quote_literal(text: str) -> str:
    """A SQL string literal: for paths and keys put into SQL text."""
    return "'" + text.replace("'", "''") + "'"


def quote_ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
