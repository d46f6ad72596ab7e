"""Load record batches into a new DuckDB warehouse file and swap it in atomically.

The new warehouse is written to a temporary file beside the target and renamed over it
only when complete (etl.warehouse.atomic): a crash, a kill or a failed extract leaves the
previous file whole, and a reader holding the old file keeps reading the old inode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from etl.errors import ConfigError, JobFailed
from etl.schema import (
    ALIAS_HISTORY_DDL,
    EXTRACT_LOG_DDL,
    RUN_TABLES,
    TABLES,
    create_table_sql,
    insert_select_sql,
)
from etl.warehouse import alias_history, extract_log, settings
from etl.warehouse.atomic import TMP_MARK, remove_leftover_files, remove_path, replace_file
from etl.warehouse.connect import (
    READ_ONLY_CONFIG,
    quote_ident,
    quote_literal,
    table_names,
    warehouse_error,
)

MB = 1024 * 1024
# DuckDB would cache every written block up to 80% of RAM; the warehouse is on disk and
# pages arrive one at a time, so a small cache keeps the extract's memory flat. Deletes
# pin blocks all over their tables, so an incremental build's limit grows with the file
# it changes (measured: deleting 5,000 of 300,000 runs in a 66 MB file needs more than
# 32 MB; a limit equal to the file's size failed an hourly incremental of a 34 MB
# warehouse of 121,200 runs, issue 23). So an incremental build gets twice the file and
# at least CHANGE_MEMORY_FLOOR: a limit is a cap, not what is used. Raising the limit
# after an OutOfMemoryException is no way out: DuckDB 2.0 then fails the retried delete
# with "Conflict on tuple deletion".
BUILD_MEMORY_LIMIT = 32 * MB
CHANGE_MEMORY_FLOOR = 256 * MB
BUILD_MEMORY_CEILING = 8 * 1024 * MB
DISK_HINT = (
    "The previous warehouse is unchanged; the disk may be full: free space in {folder} "
    "and run the extract again"
)
_ARROW_TYPES = {
    "varchar": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "ms": pa.int64(),
    "boolean": pa.bool_(),
}
# Written by the alerts (etl/alerts/state.py), not by an extract: what was alerted and each
# rule's baseline. A full rebuild keeps them as they are, like extract_log.
ALERT_TABLES = ("alerts", "alert_rule_state")
ARROW_SCHEMAS = {
    table: pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in cols])
    for table, cols in TABLES.items()
}


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    return con


def check_writable(target: Path) -> None:
    folder = target.parent
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write the warehouse {target}: folder {folder} does not exist",
            "Create the folder or choose another --db",
        )
    if not os.access(folder, os.W_OK):
        raise ConfigError(
            f"cannot write the warehouse {target}: folder {folder} is not writable",
            "Choose a --db in a folder you can write to",
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise ConfigError(
            f"cannot write the warehouse {target}: the file is read-only",
            "Fix its permissions or choose another --db",
        )


def memory_limit_for(size: int) -> int:
    """A build limit for changing a file of `size` bytes: twice its size, at least
    CHANGE_MEMORY_FLOOR, at most BUILD_MEMORY_CEILING."""
    return min(BUILD_MEMORY_CEILING, max(CHANGE_MEMORY_FLOOR, 2 * size))


def copy_alert_tables(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The alerts sent and each rule's baseline (etl/alerts/state.py), from the attached
    `database` (the warehouse being replaced): kept across rebuilds, so nothing is sent
    twice and no rule starts its baseline again."""
    for table in sorted(set(ALERT_TABLES) & table_names(con, database)):
        con.execute(
            f"create table {quote_ident(table)} as "
            f"select * from {database}.main.{quote_ident(table)}"
        )


class WarehouseBuilder:
    """Writes a new warehouse beside `target`; `commit()` checks it and renames it into place.

    With `from_existing=True` the new file starts as a copy of the current warehouse
    (an incremental load replaces rows in it); otherwise it starts empty and takes over
    the previous warehouse's extract_log and, with `keep_settings=True`, its settings
    tables. With `tables=False` it starts with no table at all.
    """

    def __init__(
        self,
        target: Path,
        from_existing: bool = False,
        keep_settings: bool = False,
        tables: bool = True,
    ):
        self.target = target
        # unique per build: DuckDB keeps a file's instance alive while anything in the
        # process still references it, and a new build must never share a failed one's
        self.tmp_path = target.with_name(f"{target.name}{TMP_MARK}{os.getpid()}-{id(self):x}")
        self.from_existing = from_existing
        self.keep_settings = keep_settings
        self.notices: list[str] = []  # the extract's warning lines, kept in runreport_meta
        self.tables = tables  # False: the caller creates every table (etl.warehouse.sources)
        self.con: duckdb.DuckDBPyConnection | None = None
        self.memory_limit = BUILD_MEMORY_LIMIT

    def __enter__(self) -> WarehouseBuilder:
        check_writable(self.target)
        remove_leftover_files(self.target)
        try:
            self._start()
        except BaseException as exc:
            self.abort()
            mapped = _build_error(self.target, exc, own_files=True)
            if mapped is exc:
                raise
            raise mapped from exc
        return self

    def _start(self) -> None:
        if self.from_existing and self.target.exists():
            shutil.copyfile(self.target, self.tmp_path)
            self.memory_limit = memory_limit_for(self.tmp_path.stat().st_size)
        self.con = connect(self.tmp_path)
        self._set_memory_limit(self.memory_limit)
        self.con.execute("set threads = 1")
        if not self.tables:
            return
        for table in TABLES:
            self.con.execute(create_table_sql(table))
        self.con.execute(EXTRACT_LOG_DDL)
        self.con.execute(ALIAS_HISTORY_DDL)
        if not self.from_existing and self.target.exists():
            self._copy_previous()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        self.abort()
        mapped = _build_error(self.target, exc, own_files=False)
        if mapped is not exc:
            raise mapped from exc

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        assert self.con is not None, "use WarehouseBuilder as a context manager"
        return self.con

    def _set_memory_limit(self, limit: int) -> None:
        self.memory_limit = limit
        self.connection.execute(f"set memory_limit = '{max(1, limit // MB)}MB'")

    def _copy_previous(self) -> None:
        """A full rebuild keeps the history of earlier extracts (and the settings)."""
        con = self.connection
        try:
            con.execute(f"attach {quote_literal(str(self.target))} as previous (read_only)")
        except duckdb.Error as exc:
            raise warehouse_error(self.target, exc) from exc
        try:
            extract_log.copy_extract_log(con, "previous")
            alias_history.copy_history(con, "previous")
            copy_alert_tables(con, "previous")
            if self.keep_settings:
                for table in sorted(table_names(con, "previous")):
                    if is_settings_table(table):
                        con.execute(
                            f"create or replace table {quote_ident(table)} as "
                            f"select * from previous.main.{quote_ident(table)}"
                        )
        finally:
            con.execute("detach previous")

    def append(self, records: dict[str, dict[str, list[Any]]]) -> None:
        """Bulk-insert one batch: each table's columns go in as one Arrow table."""
        con = self.connection
        for table, columns in records.items():
            if not columns or not next(iter(columns.values())):
                continue
            batch = pa.Table.from_pydict(columns, schema=ARROW_SCHEMAS[table])
            con.register("_batch", batch)
            try:
                self._execute(insert_select_sql(table, "_batch"))
            finally:
                con.unregister("_batch")

    def replace_tables(self, records: dict[str, dict[str, list[Any]]]) -> None:
        """Empty each table of `records` and append the batch: a listing read whole."""
        for table in records:
            self._execute(f"delete from {quote_ident(table)}")
        self.append(records)

    def deduplicate(self, table: str) -> None:
        """Keep one of each identical row (pages and incremental extracts repeat some)."""
        columns = ", ".join(quote_ident(name) for name, _ in TABLES[table])
        self._execute(
            f"create or replace temp table _distinct as select distinct {columns} "
            f"from {quote_ident(table)}"
        )
        self._execute(f"delete from {quote_ident(table)}")
        self._execute(f"insert into {quote_ident(table)} select * from _distinct")
        self._execute("drop table _distinct")

    def delete_runs(self, run_ids: list[str], keep_history: bool = False) -> None:
        """Remove the rows of these runs, before their new state is appended."""
        if not run_ids:
            return
        con = self.connection
        tables = [t for t in RUN_TABLES if not (keep_history and t == "metric_history")]
        con.register("_ids", pa.table({"run_id": pa.array(run_ids, pa.string())}))
        try:
            for table in tables:
                self._execute(f"delete from {table} where run_id in (select run_id from _ids)")
        finally:
            con.unregister("_ids")

    def delete_orphan_rows(self, tables: Sequence[str]) -> None:
        """Remove the rows of these run tables whose run is not in `runs`."""
        for table in tables:
            self._execute(
                f"delete from {quote_ident(table)} where run_id not in (select run_id from runs)"
            )

    def _execute(self, statement: str) -> None:
        try:
            self.connection.execute(statement)
        except duckdb.OutOfMemoryException as exc:
            raise JobFailed(
                f"building the warehouse {self.target} ran out of memory at a limit of "
                f"{self.memory_limit // MB} MB: {str(exc).splitlines()[0]}",
                "Free memory and run the extract again, or run a full one (--full)",
            ) from exc

    def commit(self) -> None:
        """Close the new file (checkpointing it whole), check that it holds every table
        and row written, fsync it and rename it over the target."""
        # no local name for the connection: a traceback holding it would keep the failed
        # file open (and its disk space taken) after abort() closed it
        extract_log.write_meta(self.connection, self.notices)
        expected = _row_counts(self.connection)
        try:
            self.connection.execute("checkpoint")
            self.connection.close()
        except duckdb.Error as exc:
            raise _disk_error(self.target, f"closing it failed: {exc}") from exc
        self.con = None
        _verify(self.target, self.tmp_path, expected)
        try:
            replace_file(self.tmp_path, self.target)
        except OSError as exc:
            raise _build_error(self.target, exc, own_files=True) from exc

    def abort(self) -> None:
        if self.con is not None:
            with contextlib.suppress(Exception):
                self.con.close()
            self.con = None
        for suffix in ("", ".wal", ".tmp"):
            remove_path(self.tmp_path.with_name(self.tmp_path.name + suffix))


def is_settings_table(name: str) -> bool:
    """A table the view settings live in: kept by a rebuild that is given no settings."""
    listed: tuple[str, ...] = getattr(settings, "SETTINGS_TABLES", ())
    return name in listed or name == "metric_directions" or name.startswith("runreport_settings")


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counts = {}
    for table in sorted(table_names(con)):
        row = con.execute(f"select count(*) from {quote_ident(table)}").fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def _verify(target: Path, tmp_path: Path, expected: dict[str, int]) -> None:
    """DuckDB does not always raise when it cannot write on close (a full disk): read the
    file back before it may replace the good one."""
    wal = tmp_path.with_name(tmp_path.name + ".wal")
    if wal.exists():
        raise _disk_error(target, "its write-ahead log was not checkpointed")
    try:
        con = duckdb.connect(str(tmp_path), read_only=True, config=dict(READ_ONLY_CONFIG))
        try:
            found = _row_counts(con)
        finally:
            con.close()
    except duckdb.Error as exc:
        raise _disk_error(target, f"it cannot be read back: {str(exc).splitlines()[0]}") from exc
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(t for t in expected if t in found and found[t] != expected[t])
        raise _disk_error(target, f"tables missing {missing}, row counts differ in {wrong}")


def _disk_error(target: Path, reason: str) -> JobFailed:
    return JobFailed(
        f"the new warehouse for {target} is incomplete ({reason})",
        DISK_HINT.format(folder=target.parent),
    )


def _build_error(target: Path, exc: BaseException, own_files: bool) -> BaseException:
    """DuckDB's write failures (no space left, ...) as one line naming the warehouse; an
    OSError too where only the builder's own files can have raised it."""
    written = isinstance(exc, (duckdb.IOException, duckdb.TransactionException))
    if written or (own_files and isinstance(exc, OSError)):
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return JobFailed(
            f"writing the new warehouse for {target} failed: {message}",
            DISK_HINT.format(folder=target.parent),
        )
    return exc
