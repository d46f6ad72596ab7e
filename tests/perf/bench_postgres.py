"""The extract benchmark's `--via sql` table on PostgreSQL, as whole processes.

    python tests/perf/bench_postgres.py --runs 120000

A script, not a test. It starts a throwaway PostgreSQL cluster (tests/postgres.py: the
system's server binaries, 127.0.0.1, fsync off as in the tests), lets MLflow create its
schema there, and copies the generated benchmark store (tests/perf/make_store.py, the same
cached SQLite file bench_extract.py uses) into it table by table with COPY, then ANALYZEs
it (a live store's tables have statistics; freshly bulk-loaded ones do not, and without
them the incremental's id lookups scan whole tables: 5 s instead of 1.6). Then, on that
one store, it times:

1. the plain way: `mlflow.search_runs(search_all_experiments=True, run_view_type=ALL)`;
2. `runreport extract --full` (search_runs);
3. `runreport extract --via sql --full`, and the bare copy of the same tables into DuckDB
   (tests/perf/bare_copy.py, the limit);
4. after 1% new runs (generated in a copy of the SQLite store, copied over the same way
   and ANALYZEd), `runreport extract --via sql --incremental` and `runreport extract
   --incremental`, each the median of three attempts from the same warehouse.

Memory is bench_extract.py's peak tree MB. The PostgreSQL server's own time and memory are
not counted (as the mlflow server's are not over HTTP): only the client's.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script

from tests.perf.bench_extract import (
    PERF_DIR,
    Measurement,
    fmt,
    measure_plain,
    measure_runreport,
    ratio,
)
from tests.perf.make_store import add_runs, cached_store
from tests.postgres import _cluster, _missing, server_binaries

# MLflow's tables a generated store fills, parents first (foreign keys).
FILLED_TABLES = ("experiments", "experiment_tags", "runs", "tags", "params", "metrics",
                 "latest_metrics")  # fmt: skip
RUN_KEYED = ("tags", "params", "metrics", "latest_metrics")
COPY_BATCH = 10_000


def columns_of(sqlite: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in sqlite.execute(f'pragma table_info("{table}")')]


def boolean_columns(pg: object, table: str) -> set[str]:
    rows = pg.execute(  # type: ignore[attr-defined]
        "select column_name from information_schema.columns "
        "where table_name = %s and data_type = 'boolean'",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


def rows_of(cursor: sqlite3.Cursor) -> Iterator[tuple]:
    while batch := cursor.fetchmany(COPY_BATCH):
        yield from batch


def copy_rows(pg: object, sqlite: sqlite3.Connection, table: str, where: str = "") -> int:
    """The SQLite table's rows (those matching `where`) into the PostgreSQL table."""
    columns = columns_of(sqlite, table)
    booleans = boolean_columns(pg, table)
    flags = [name in booleans for name in columns]
    names = ", ".join(f'"{c}"' for c in columns)
    count = 0
    with pg.cursor() as cur, cur.copy(f"copy {table} ({names}) from stdin") as copy:  # type: ignore[attr-defined]
        for row in rows_of(sqlite.execute(f'select {names} from "{table}" {where}')):
            copy.write_row(
                [
                    bool(v) if flag and v is not None else v
                    for v, flag in zip(row, flags, strict=True)
                ]
            )
            count += 1
    return count


def load_store(pg_uri: str, store: Path, since_ms: int | None = None) -> int:
    """Copy the generated store into the PostgreSQL store; with `since_ms`, only the runs
    started since then (the increment). Returns the runs copied."""
    import psycopg

    sqlite = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        with psycopg.connect(pg_uri) as pg:
            if since_ms is None:
                pg.execute("delete from experiment_tags; delete from experiments")
                for table in FILLED_TABLES:
                    copy_rows(pg, sqlite, table)
                # the next experiment MLflow creates must not collide with copied ids
                pg.execute(
                    "select setval(pg_get_serial_sequence('experiments', 'experiment_id'), "
                    "(select max(experiment_id) from experiments))"
                )
                return int(sqlite.execute("select count(*) from runs").fetchone()[0])
            new = f"where run_uuid in (select run_uuid from runs where start_time >= {since_ms})"
            copied = copy_rows(pg, sqlite, "runs", f"where start_time >= {since_ms}")
            for table in RUN_KEYED:
                copy_rows(pg, sqlite, table, new)
            return copied
    finally:
        sqlite.close()


INCREMENTAL_ATTEMPTS = 3


def measure_incremental(
    measure: Callable[[str, list[str] | None, Path | None, str], Measurement],
    step: str,
    uri: str,
    db: Path,
    via: list[str],
) -> Measurement:
    """The median attempt of `runreport extract --incremental` on copies of `db`."""
    before = db.with_name(db.name + ".before")
    shutil.copyfile(db, before)
    attempts = []
    for _ in range(INCREMENTAL_ATTEMPTS):
        shutil.copyfile(before, db)
        argv = ["extract", *via, "--incremental", "--tracking-uri", uri, "--db", str(db)]
        attempts.append(measure(step, argv, db, uri))
    return sorted(attempts, key=lambda m: m.ok_seconds or math.inf)[len(attempts) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--json", type=Path, help="Write the numbers to this file.")
    args = parser.parse_args()
    problem = _missing()
    bin_dir = server_binaries()
    if problem or bin_dir is None:
        sys.exit(f"bench_postgres: {problem}")
    store, _ = cached_store(args.runs, args.experiments)
    work = Path(tempfile.mkdtemp(prefix="runreport-bench-pg-"))
    results: list[Measurement] = []

    def measure(step: str, argv: list[str] | None, db: Path | None, uri: str) -> Measurement:
        m = Measurement(args.runs, "postgresql", step, 1)
        m = measure_plain(uri, work, m) if argv is None else measure_runreport(argv, db, work, m)
        results.append(m)
        print(f"  {step:<16} {fmt(m.seconds, '.1f')} s, {fmt(m.peak_tree_mb, ',.0f')} MB, "
              f"runs {m.runs_obtained} {m.note}", flush=True)  # fmt: skip
        return m

    try:
        with _cluster(bin_dir) as cluster:
            from mlflow import MlflowClient

            uri = cluster.new_database("bench")
            MlflowClient(uri).search_experiments()  # MLflow's schema, by its migrations
            import time

            began = time.perf_counter()
            runs = load_store(uri, store)
            # what autovacuum does to a live store's tables; without statistics right after
            # a bulk load, PostgreSQL scans whole tables for the incremental's run ids
            cluster.execute("analyze", "bench")
            print(f"copied {runs:,} runs into PostgreSQL in {time.perf_counter() - began:.1f} s")
            plain = measure("plain", None, None, uri)
            full_db, sql_db = work / "full.duckdb", work / "sql.duckdb"
            full = measure("full", ["extract", "--full", "--tracking-uri", uri, "--db",
                                    str(full_db)], full_db, uri)  # fmt: skip
            sql = measure("sql", ["extract", "--via", "sql", "--full", "--tracking-uri", uri,
                                  "--db", str(sql_db)], sql_db, uri)  # fmt: skip
            bare_db = work / "bare.duckdb"
            bare = measure("bare", ["--script", str(PERF_DIR / "bare_copy.py"), uri,
                                    str(bare_db)], bare_db, uri)  # fmt: skip
            increment = work / "increment.db"
            shutil.copyfile(store, increment)
            since_ms = int(time.time() * 1000) - 120_000
            added = add_runs(increment, args.runs // 100)
            load_store(uri, increment, since_ms)
            cluster.execute("analyze", "bench")  # as after the bulk load
            print(f"added {added.runs:,} runs")
            # an incremental is a few seconds, where a stray second matters: each runs
            # INCREMENTAL_ATTEMPTS times on a copy of the same warehouse, the median counts
            sql_inc = measure_incremental(measure, "sql-incremental", uri, sql_db, ["--via", "sql"])
            inc = measure_incremental(measure, "incremental", uri, full_db, [])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "sql runs/s over plain": ratio(sql.runs_per_second, plain.runs_per_second),
        "sql time over bare copy": ratio(sql.ok_seconds, bare.ok_seconds),
        "sql peak over search_runs extract": ratio(sql.peak_tree_mb, full.peak_tree_mb),
        "sql incremental over full search_runs": ratio(sql_inc.ok_seconds, full.ok_seconds),
        "sql incremental over full sql": ratio(sql_inc.ok_seconds, sql.ok_seconds),
        "search_runs incremental over full": ratio(inc.ok_seconds, full.ok_seconds),
    }
    for name, value in summary.items():
        print(f"{name}: {fmt(value, '.3f')}")
    if args.json:
        payload = {"results": [asdict(m) for m in results], "summary": summary}
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
