"""The physical limit of an extract: MLflow's tables copied as they are into DuckDB.

    python tests/perf/bare_copy.py /path/to/mlflow.db copy.duckdb
    python tests/perf/bare_copy.py postgresql://user@127.0.0.1:5432/mlflow copy.duckdb

No joins, no renaming, no NaN or run-name handling: each table the warehouse is built from
(experiments, experiment_tags, runs, params, tags, latest_metrics) is streamed from the
store (SQLite with the stdlib driver, PostgreSQL with psycopg's server-side cursor) and
appended to DuckDB through Arrow, in chunks. DuckDB's own sqlite and postgres extensions
would be the other way, but they are downloaded on first use and this machine has no
network.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

TABLES = ("experiments", "experiment_tags", "runs", "params", "tags", "latest_metrics")
CHUNK_ROWS = 50_000


def connect(store: str) -> tuple[Any, Callable[[str], Any]]:
    """A DB-API connection to the SQLite file (read-only) or the PostgreSQL URI, and how to
    open a cursor that streams a table: a named one on PostgreSQL (server-side); SQLite's
    cursors always stream."""
    if store.startswith("postgresql"):
        import psycopg

        con = psycopg.connect(store)
        return con, lambda table: con.cursor(name=table)
    lite = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    return lite, lambda table: lite.cursor()


def bare_copy(store: str, db: Path) -> int:
    """Copy the tables; returns the rows copied."""
    source, streaming_cursor = connect(store)
    target = duckdb.connect(str(db))
    target.execute("set memory_limit = '32MB'; set threads = 1")
    copied = 0
    try:
        for table in TABLES:
            cursor = streaming_cursor(table)
            cursor.execute(f"select * from {table}")
            names = [d[0] for d in cursor.description]
            created = False
            while rows := cursor.fetchmany(CHUNK_ROWS):
                columns = [pa.array(column) for column in zip(*rows, strict=True)]
                target.register("_batch", pa.table(columns, names=names))
                verb = f"insert into {table}" if created else f"create table {table} as"
                target.execute(f"{verb} select * from _batch")
                target.unregister("_batch")
                created = True
                copied += len(rows)
    finally:
        source.close()
        target.close()
    return copied


def main() -> None:
    began = time.perf_counter()
    rows = bare_copy(sys.argv[1], Path(sys.argv[2]))
    print(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - began, 3)}))


if __name__ == "__main__":
    main()
