"""`runreport export`: every warehouse table as Parquet, for a lake and another engine.

DIR gets one folder per table, named after it (`DIR/runs/...`), and `_manifest.json`.
The runs and the tables keyed by run (RUN_TABLES), logged models and traces are
partitioned by experiment, Hive style (`DIR/params/experiment_id=1/data_0.parquet`); a
run-keyed table takes its run's experiment_id from `runs` (NULL, written as
`__HIVE_DEFAULT_PARTITION__`, for a row whose run is missing). As in Hive, the partition
column lives in the folder names, not in the files: a reader with hive partitioning on
sees it as a column, and for the run-keyed tables it is one more column than the
warehouse table has. The other tables are one file each (`DIR/experiments/data_0.parquet`).

Times stay UTC instants (Parquet timestamps adjusted to UTC). The warehouse is read
through a read-only connection (etl.warehouse.connect, which cannot write files) and
streamed as Arrow batches into an in-memory DuckDB that writes the Parquet files.

The export is written into a folder beside DIR, read back (row counts per table), synced
to disk and swapped in whole (etl.warehouse.atomic): a failed or killed export leaves
the previous one in place. DIR must be new, empty or an earlier export that holds only
what runreport wrote: `_manifest.json`, the table folders it lists, and in those only
partition folders (`name=value`) and Parquet files. Anything else (the warehouse itself,
a file of the user's) makes the export refuse, exit 2, before it changes anything. When
DIR is a symbolic link, the export replaces the folder it points to, beside that folder,
and the link keeps pointing at the new export.

`_manifest.json`: format, runreport_version, exported_at, warehouse (its path),
schema_version, extract (the warehouse's last extract_log row: extract_id, started_at,
ended_at, mode, status; null when it has none), partition_column, and tables: name ->
{path, rows, columns [{name, type}] (the warehouse table's, in DuckDB type names),
partitioned (bool)}.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from etl.errors import ConfigError, JobFailed
from etl.schema import RUN_TABLES, SOURCE_COLUMN
from etl.warehouse.atomic import fsync_tree, remove_leftovers, write_folder
from etl.warehouse.connect import open_warehouse, quote_ident, quote_literal, table_names
from etl.warehouse.extract_log import schema_version

MANIFEST = "_manifest.json"
MANIFEST_FORMAT = 1
PARTITION_COLUMN = "experiment_id"
# tables with an experiment_id of their own that grow with the runs; experiments and
# experiment_tags are small and stay one file each
PARTITIONED_BY_OWN_COLUMN = ("runs", "logged_models", "traces")
DATA_FILE = "data_0.parquet"
BATCH_ROWS = 100_000
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


@dataclass
class ExportResult:
    folder: Path
    rows: dict[str, int]  # table -> rows written
    manifest: dict[str, Any]

    def describe(self) -> str:
        total = sum(self.rows.values())
        return f"exported {len(self.rows)} tables ({total:,} rows) to {self.folder}"


def export_parquet(db: Path, target: Path) -> ExportResult:
    """Write every table of the warehouse `db` as Parquet into the folder `target`,
    replacing it whole; see the module docstring."""
    folder = export_folder(target)
    check_target(folder, db)
    source = open_warehouse(db)
    try:
        remove_leftovers(folder, MANIFEST)
        try:
            with write_folder(folder) as work:
                manifest = _write_export(source, db, work)
                _verify(work, manifest)
                fsync_tree(work)
        except (OSError, duckdb.IOException) as exc:
            raise _write_error(folder, exc) from exc
    finally:
        source.close()
    rows = {table: info["rows"] for table, info in manifest["tables"].items()}
    return ExportResult(target, rows, manifest)


def export_folder(target: Path) -> Path:
    """The folder the export replaces: `target`, or the folder a symbolic link `target`
    points to (the link is kept and points at the new export)."""
    if not target.is_symlink() and target.name not in ("", ".."):
        return target
    try:
        return target.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise ConfigError(
            f"the Parquet export folder {target} is a link that cannot be followed: {exc}",
            "Fix the link or choose another --parquet",
        ) from None


def check_target(target: Path, db: Path) -> None:
    """DIR is replaced whole: refuse a file, a folder that holds the warehouse `db` or
    anything runreport did not write, and a parent folder that is missing or not
    writable."""
    if target.exists() and not target.is_dir():
        raise ConfigError(
            f"the Parquet export folder {target} is a file", "Choose another --parquet"
        )
    if target.is_dir() and db.resolve().is_relative_to(target.resolve()):
        raise ConfigError(
            f"the warehouse {db} is inside the Parquet export folder {target}, which the "
            "export replaces whole",
            "Choose a --parquet folder that does not hold the warehouse",
        )
    if target.is_dir() and any(target.iterdir()):
        check_earlier_export(target)
    parent = target.parent
    if not parent.is_dir():
        raise ConfigError(
            f"cannot write the Parquet export {target}: folder {parent} does not exist",
            "Create the folder or choose another --parquet",
        )
    if not os.access(parent, os.W_OK):
        raise ConfigError(
            f"cannot write the Parquet export {target}: folder {parent} is not writable",
            "Choose a --parquet in a folder you can write to",
        )


def check_earlier_export(folder: Path) -> None:
    """A folder with entries may be replaced only when runreport wrote every one of them."""
    if not (folder / MANIFEST).is_file():
        raise ConfigError(
            f"the Parquet export folder {folder} holds files that are not a runreport export "
            f"(no {MANIFEST}), and the export replaces the whole folder",
            "Choose a new or empty folder for --parquet",
        )
    try:
        manifest = read_manifest(folder)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.message}, and the export replaces the whole folder {folder}",
            "Move the folder away or choose a new or empty folder for --parquet",
        ) from None
    foreign = foreign_entries(folder, manifest)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ConfigError(
            f"the Parquet export folder {folder} holds {', '.join(foreign[:3])}{more}, which "
            f"runreport did not write (not in its {MANIFEST}), and the export replaces the "
            "whole folder",
            "Move them out, or choose a new or empty folder for --parquet",
        )


def foreign_entries(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """What in the earlier export `folder` runreport did not write: entries other than the
    manifest and the table folders it lists; in those, anything but partition folders
    (`name=value`) and Parquet files; a symbolic link anywhere."""
    listed = {
        str(info.get("path")) for info in manifest["tables"].values() if isinstance(info, dict)
    }
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name in listed and entry.is_dir() and not entry.is_symlink():
            parts = sorted(entry.rglob("*"))
            foreign += [str(p.relative_to(folder)) for p in parts if not is_export_part(p)]
        else:
            foreign.append(entry.name)
    return foreign


def is_export_part(path: Path) -> bool:
    """A partition folder (`name=value`) or a Parquet file, as the export writes them."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return "=" in path.name
    return path.is_file() and path.suffix == ".parquet"


def partition_source(table: str, columns: list[str]) -> str | None:
    """The query giving `table`'s rows with their experiment_id, or None when the table
    is not partitioned."""
    selected = ", ".join(f"t.{quote_ident(c)}" for c in columns)
    if table in PARTITIONED_BY_OWN_COLUMN and PARTITION_COLUMN in columns:
        return f"select {selected} from {quote_ident(table)} as t"
    if table in RUN_TABLES and "run_id" in columns:
        # in a warehouse of several sources a run id is unique per source only
        same_source = (
            f" and runs.{SOURCE_COLUMN} = t.{SOURCE_COLUMN}" if SOURCE_COLUMN in columns else ""
        )
        return (
            f"select {selected}, runs.experiment_id from {quote_ident(table)} as t "
            f"left join runs on runs.run_id = t.run_id{same_source}"
        )
    return None


def partition_columns(columns: list[str]) -> str:
    """experiment_id, under the source in a warehouse of several sources."""
    return f"{SOURCE_COLUMN}, {PARTITION_COLUMN}" if SOURCE_COLUMN in columns else PARTITION_COLUMN


def _write_export(source: duckdb.DuckDBPyConnection, db: Path, work: Path) -> dict[str, Any]:
    writer = duckdb.connect()
    try:
        writer.execute("set TimeZone = 'UTC'")
        tables = {
            table: _write_table(source, writer, table, work / table)
            for table in sorted(table_names(source))
        }
    finally:
        writer.close()
    manifest = {
        "format": MANIFEST_FORMAT,
        "runreport_version": runreport_version(),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "warehouse": str(db.resolve()),
        "schema_version": schema_version(source),
        "extract": last_extract(source),
        "partition_column": PARTITION_COLUMN,
        "tables": tables,
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def _write_table(
    source: duckdb.DuckDBPyConnection,
    writer: duckdb.DuckDBPyConnection,
    table: str,
    folder: Path,
) -> dict[str, Any]:
    columns = table_columns(source, table)
    names = [name for name, _ in columns]
    query = partition_source(table, names)
    partitioned = query is not None
    folder.mkdir()  # a partitioned table without rows writes no file: its folder stays
    if query is None:
        query = f"select {', '.join(quote_ident(n) for n in names)} from {quote_ident(table)}"
    destination = folder if partitioned else folder / DATA_FILE
    options = (
        f"format parquet, partition_by ({partition_columns(names)})"
        if partitioned
        else "format parquet"
    )
    writer.register("_export_source", source.sql(query).to_arrow_reader(BATCH_ROWS))
    try:
        writer.execute(
            f"copy (select * from _export_source) to {quote_literal(str(destination))} ({options})"
        )
    finally:
        writer.unregister("_export_source")
    rows = source.execute(f"select count(*) from {quote_ident(table)}").fetchone()
    return {
        "path": table,
        "rows": int(rows[0]) if rows else 0,
        "columns": [{"name": name, "type": kind} for name, kind in columns],
        "partitioned": partitioned,
    }


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "select column_name, data_type from duckdb_columns() where schema_name = 'main' "
        "and database_name = current_database() and table_name = ? order by column_index",
        [table],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def last_extract(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The warehouse's last extract_log row (by extract_id, then start), or None."""
    if "extract_log" not in table_names(con):
        return None
    present = {name for name, _ in table_columns(con, "extract_log")}
    wanted = [c for c in ("extract_id", "started_at", "ended_at", "mode", "status") if c in present]
    order = "extract_id desc nulls last, " if "extract_id" in present else ""
    row = con.execute(
        f"select {', '.join(wanted)} from extract_log "
        f"order by {order}started_at desc nulls last limit 1"
    ).fetchone()
    if row is None:
        return None
    return {name: _json_value(value) for name, value in zip(wanted, row, strict=True)}


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def runreport_version() -> str:
    try:
        return importlib.metadata.version("runreport")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an export, or a ConfigError saying the folder is not one."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} is not a runreport Parquet export (no {MANIFEST})",
            "Export one first: runreport export --parquet DIR",
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", "Export again: runreport export --parquet DIR"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise ConfigError(f"{path} has no tables", "Export again: runreport export --parquet DIR")
    return manifest


def local_export(value: str) -> Path:
    """`views --parquet`: the folder of a local export; a URI (s3://, gs://, abfss://) is
    refused, as the manifest is read from this machine."""
    if URI.match(value):
        raise ConfigError(
            f"views --parquet reads an export folder on this machine, not {value}",
            "Pass the local folder runreport export wrote (or a local copy or mount of it)",
        )
    return Path(value)


def _verify(work: Path, manifest: dict[str, Any]) -> None:
    """Read the written files back: each table's row count must match the warehouse's."""
    reader = duckdb.connect()
    try:
        for table, info in manifest["tables"].items():
            pattern = str(work / table / ("**/*.parquet" if info["partitioned"] else DATA_FILE))
            files = list((work / table).rglob("*.parquet"))
            row = (
                reader.execute(
                    f"select count(*) from read_parquet({quote_literal(pattern)})"
                ).fetchone()
                if files
                else (0,)
            )
            found = int(row[0]) if row else 0
            if found != info["rows"]:
                raise JobFailed(
                    f"the Parquet export of table {table} holds {found} rows, the warehouse "
                    f"{info['rows']}",
                    "The previous export is unchanged; the disk may be full: free space and "
                    "export again",
                )
    finally:
        reader.close()


def _write_error(target: Path, exc: BaseException) -> JobFailed:
    message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return JobFailed(
        f"writing the Parquet export {target} failed: {message}",
        f"The previous export is unchanged; the disk may be full: free space in "
        f"{target.parent} and export again",
    )
