"""Load record batches into a new DuckDB warehouse file and swap it in atomically.

The new warehouse is written to a temporary file beside the target and renamed over it
only when complete: a crash, a kill or a failed extract leaves the previous file whole,
and a reader holding the old file keeps reading the old inode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from etl.errors import ConfigError
from etl.schema import (
    EXTRACT_LOG_DDL,
    RUN_TABLES,
    TABLES,
    create_table_sql,
    insert_select_sql,
)

TMP_MARK = ".runreport-tmp-"
BUILD_MEMORY_LIMIT = "32MB"
_ARROW_TYPES = {
    "varchar": pa.string(),
    "double": pa.float64(),
    "bigint": pa.int64(),
    "ms": pa.int64(),
}
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


def remove_leftovers(target: Path) -> None:
    """Temporary files of runs that were killed before they could clean up."""
    for leftover in target.parent.glob(f"{target.name}{TMP_MARK}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


class WarehouseBuilder:
    """Writes a new warehouse beside `target`; `commit()` renames it into place.

    With `from_existing=True` the new file starts as a copy of the current warehouse
    (an incremental load replaces rows in it); otherwise it starts empty.
    """

    def __init__(self, target: Path, from_existing: bool = False) -> None:
        self.target = target
        self.tmp_path = target.with_name(f"{target.name}{TMP_MARK}{os.getpid()}")
        self.from_existing = from_existing
        self.con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> WarehouseBuilder:
        check_writable(self.target)
        remove_leftovers(self.target)
        if self.from_existing and self.target.exists():
            shutil.copyfile(self.target, self.tmp_path)
        self.con = connect(self.tmp_path)
        # DuckDB would cache every written block up to 80% of RAM; the warehouse is on disk
        # and pages arrive one at a time, so a small cache keeps the extract's memory flat.
        self.con.execute(f"set memory_limit = '{BUILD_MEMORY_LIMIT}'")
        self.con.execute("set threads = 1")
        for table in TABLES:
            self.con.execute(create_table_sql(table))
        self.con.execute(EXTRACT_LOG_DDL)
        if not self.from_existing and self.target.exists():
            self._copy_extract_log()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        assert self.con is not None, "use WarehouseBuilder as a context manager"
        return self.con

    def _copy_extract_log(self) -> None:
        """A full rebuild keeps the history of earlier extracts."""
        con = self.connection
        con.execute(f"attach '{self.target}' as previous (read_only)")
        try:
            has_log = con.execute(
                "select count(*) from duckdb_tables() "
                "where database_name = 'previous' and table_name = 'extract_log'"
            ).fetchone()
            if has_log and has_log[0]:
                con.execute("insert into extract_log select * from previous.extract_log")
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
                con.execute(insert_select_sql(table, "_batch"))
            finally:
                con.unregister("_batch")

    def delete_runs(self, run_ids: list[str], keep_history: bool = False) -> None:
        """Remove the rows of these runs, before their new state is appended."""
        if not run_ids:
            return
        con = self.connection
        tables = [t for t in RUN_TABLES if not (keep_history and t == "metric_history")]
        con.register("_ids", pa.table({"run_id": pa.array(run_ids, pa.string())}))
        try:
            for table in tables:
                con.execute(f"delete from {table} where run_id in (select run_id from _ids)")
        finally:
            con.unregister("_ids")

    def commit(self) -> None:
        """Close the new file (checkpointing it whole) and rename it over the target."""
        self.connection.close()
        self.con = None
        os.replace(self.tmp_path, self.target)
        _fsync_dir(self.target.parent)

    def abort(self) -> None:
        if self.con is not None:
            with contextlib.suppress(Exception):
                self.con.close()
            self.con = None
        for path in (self.tmp_path, self.tmp_path.with_name(self.tmp_path.name + ".wal")):
            with contextlib.suppress(OSError):
                path.unlink()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
