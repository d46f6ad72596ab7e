"""The warehouse's own bookkeeping: extract_log rows (by column name, so a warehouse of an
older schema version still reads and copies), runreport_meta, and what an incremental
extract needs to know about the previous warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from etl.errors import RunreportError
from etl.schema import EXTRACT_LOG_COLUMNS, META_DDL, META_TABLE, SCHEMA_VERSION
from etl.warehouse.connect import open_warehouse, quote_ident, table_names


@dataclass
class PreviousWarehouse:
    """What the extract reads from the warehouse it is about to replace."""

    schema_version: int | None
    last_start: datetime | None  # of the last successful extract
    runs: int
    deleted_ids: set[str] = field(default_factory=set)
    running_ids: set[str] = field(default_factory=set)


def read_previous(db: Path) -> PreviousWarehouse | None:
    """None when there is no warehouse yet; ConfigError when `db` is not one."""
    if not db.exists():
        return None
    con = open_warehouse(db)
    try:
        return PreviousWarehouse(
            schema_version=schema_version(con),
            last_start=_last_start(con, None),
            runs=_count(con, "select count(*) from runs"),
            deleted_ids=_ids(con, "select run_id from runs where lifecycle_stage = 'deleted'"),
            running_ids=_ids(con, "select run_id from runs where status = 'RUNNING'"),
        )
    finally:
        con.close()


def last_extract_start(db: Path, mode: str | None = None) -> datetime | None:
    """Start time of the last successful extract (of this mode), or None when the warehouse
    is missing, unreadable or has none: then the next extract is a full one."""
    if not db.exists():
        return None
    try:
        con = open_warehouse(db)
    except RunreportError:
        return None
    try:
        return _last_start(con, mode)
    finally:
        con.close()


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    if META_TABLE not in table_names(con):
        return None
    row = con.execute(f"select value from {META_TABLE} where key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else None
    except ValueError:
        return None


def write_meta(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(META_DDL)
    con.execute(f"insert into {META_TABLE} values ('schema_version', ?)", [str(SCHEMA_VERSION)])


def copy_extract_log(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The rows of `database`.extract_log, by the columns both tables have."""
    if "extract_log" not in table_names(con, database):
        return
    theirs = {
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = ? "
            "and schema_name = 'main' and table_name = 'extract_log'",
            [database],
        ).fetchall()
    }
    shared = ", ".join(quote_ident(c) for c in EXTRACT_LOG_COLUMNS if c in theirs)
    con.execute(
        f"insert into extract_log ({shared}) select {shared} "
        f"from {quote_ident(database)}.main.extract_log"
    )


def next_extract_id(con: duckdb.DuckDBPyConnection) -> int:
    return _count(con, "select coalesce(max(extract_id), 0) + 1 from extract_log")


def latest_run_start(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute("select max(start_time) from runs").fetchone()
    return row[0] if row else None


def insert_row(con: duckdb.DuckDBPyConnection, **values: Any) -> None:
    """One extract_log row; columns not given are NULL."""
    unknown = set(values) - set(EXTRACT_LOG_COLUMNS)
    assert not unknown, f"not extract_log columns: {unknown}"
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    con.execute(f"insert into extract_log ({names}) values ({marks})", list(values.values()))


def _last_start(con: duckdb.DuckDBPyConnection, mode: str | None) -> datetime | None:
    if "extract_log" not in table_names(con):
        return None
    row = con.execute(
        "select max(started_at) from extract_log where status = 'ok' "
        "and (?::varchar is null or mode = ?)",
        [mode, mode],
    ).fetchone()
    return row[0] if row else None


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def _ids(con: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    return {run_id for (run_id,) in con.execute(query).fetchall()}
