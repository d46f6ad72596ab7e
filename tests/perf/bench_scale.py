"""Issue #26's benchmark: the whole job at a million runs in ten thousand experiments.

    python tests/perf/bench_scale.py --runs 1000000 --experiments 10000 --json scale.json
    python tests/perf/bench_scale.py --runs 250000 --experiments 2500   # a smaller machine

A script, not a test. It takes the generated SQLite store of that shape from the cache
(tests/perf/.cache/, made by make_store.py: ~10% nested children, failures, deleted runs
and one deleted experiment; generated first when missing) and works on a copy. Each step
is a whole process, timed with its peak tree memory (bench_extract.run_child: the private
RSS of the process and its children, sampled 20 times a second), in this order:

1. `bare`: the store's tables copied as they are into DuckDB (bare_copy.py, the limit);
2. `sql`: `runreport extract --via sql --full`;
3. `sql-incremental`: `runreport extract --via sql --incremental` after 0.1% new runs;
4. `report`: `runreport report` (7-day window) on the warehouse, and the size of what it
   wrote (recent_runs.csv holds every active run);
5. `view:<name>`: `runreport sql` on leaderboard, runs_per_day and run_overview filtered
   to the biggest experiment, each a process (importing the CLI included) and each inside
   one open connection (`in-process`);
6. `export`: `runreport export --parquet` against `copy`: DuckDB's own `COPY ... TO`
   of every warehouse table into one Parquet file each, and `copy-partitioned`: the same
   partitioned by experiment as the export is (Hive style, a folder per experiment);
7. with `--search-runs`: `runreport extract` through search_runs, full (slow at 1M);
   with `--plain`: the plain `mlflow.search_runs` (stops at 100,000 runs).

Other engineers' work shares this machine's two cores: times are noisy, compare ratios
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script

from etl.schema import RUN_TABLES
from tests.perf.bench_extract import (
    PERF_DIR,
    PLAIN_WAY,
    ChildResult,
    run_child,
    runreport_argv,
    store_run_count,
    warehouse_run_count,
)
from tests.perf.make_store import add_runs, cached_store, sqlite_uri

VIEW_QUERIES = {
    "leaderboard": "from leaderboard",
    "runs_per_day": "from runs_per_day",
    "run_overview": "from run_overview where experiment_id = '{experiment}'",
}
COPY_SCRIPT = """
import sys, duckdb
db, folder = sys.argv[1], sys.argv[2]
con = duckdb.connect(db, read_only=True)
for (table,) in con.execute(
    "select table_name from duckdb_tables() where database_name = current_database()"
).fetchall():
    con.execute(f"copy {table} to '{folder}/{table}.parquet' (format parquet)")
"""
# the same, partitioned by experiment as the export partitions (export.py)
COPY_PARTITIONED = """
import json, sys, duckdb
db, folder, RUN_TABLES = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
con = duckdb.connect(db, read_only=True)
for (table,) in con.execute(
    "select table_name from duckdb_tables() where database_name = current_database()"
).fetchall():
    if table in ("runs", "logged_models", "traces"):
        query = table
    elif table in RUN_TABLES:
        query = f"(select t.*, runs.experiment_id from {table} t left join runs using (run_id))"
    else:
        con.execute(f"copy {table} to '{folder}/{table}.parquet' (format parquet)")
        continue
    con.execute(
        f"copy {query} to '{folder}/{table}' (format parquet, partition_by (experiment_id))"
    )
"""
IN_PROCESS = """
import json, sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("set TimeZone = 'UTC'")
con.execute("set enable_progress_bar = false")
times = {}
for name, query in json.loads(sys.argv[2]).items():
    began = time.perf_counter()
    rows = len(con.execute(query).fetchall())
    times[name] = [time.perf_counter() - began, rows]
print(json.dumps(times))
"""


@dataclass
class Step:
    step: str
    seconds: float | None = None
    peak_tree_mb: float | None = None
    rows: int | None = None
    note: str = ""


def measure(steps: list[Step], name: str, argv: list[str], work: Path) -> ChildResult:
    child = run_child(argv, work)
    step = Step(name, round(child.seconds, 2), round(child.peak_tree_mb, 1))
    if child.exit_code != 0:
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        step.note = f"exit {child.exit_code}: {lines[-1][:160] if lines else ''}"
    steps.append(step)
    print(json.dumps(asdict(step)), flush=True)
    return child


def biggest_experiment(db: Path) -> str:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "select experiment_id from runs group by all order by count(*) desc limit 1"
        ).fetchone()
        return str(row[0]) if row else "0"
    finally:
        con.close()


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def bench(args: argparse.Namespace) -> list[Step]:
    store_cached, generated = cached_store(args.runs, args.experiments)
    took = "from the cache" if generated is None else f"generated in {generated:.0f} s"
    print(f"store: {store_cached} ({took})", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"runreport-scale-{args.runs}-", dir=args.work))
    steps: list[Step] = []
    try:
        store = work / "mlflow.db"
        shutil.copyfile(store_cached, store)
        uri, db, cli = sqlite_uri(store), work / "runs.duckdb", runreport_argv()
        expected = store_run_count(store)
        bare = work / "bare.duckdb"
        measure(steps, "bare", [sys.executable, str(PERF_DIR / "bare_copy.py"), str(store),
                                str(bare)], work)  # fmt: skip
        bare.unlink(missing_ok=True)
        began_ms = int(time.time() * 1000)
        measure(steps, "sql", [*cli, "extract", "--via", "sql", "--full", "--tracking-uri", uri,
                               "--db", str(db)], work)  # fmt: skip
        steps[-1].rows = warehouse_run_count(db)
        steps[-1].note = steps[-1].note or f"{expected:,} runs in the store"
        added = add_runs(store, max(1, args.runs // 1000), seed=args.runs)
        print(f"added {added.runs:,} runs in {added.seconds:.1f} s", flush=True)
        incremental = ["extract", "--via", "sql", "--incremental", "--tracking-uri", uri]
        measure(steps, "sql-incremental", [*cli, *incremental, "--db", str(db)], work)
        steps[-1].rows = warehouse_run_count(db)
        steps[-1].note = steps[-1].note or f"since {began_ms}"
        out = work / "report"
        measure(steps, "report", [*cli, "report", "--db", str(db), "--out", str(out)], work)
        if out.is_dir():
            csv = out / "recent_runs.csv"
            size = csv.stat().st_size / 1e6 if csv.exists() else 0
            steps[-1].note = f"folder {folder_mb(out):.0f} MB, recent_runs.csv {size:.0f} MB"
        experiment = biggest_experiment(db)
        queries = {n: q.format(experiment=experiment) for n, q in VIEW_QUERIES.items()}
        for name, query in queries.items():
            measure(steps, f"view:{name}", [*cli, "sql", "--db", str(db), "--format", "csv",
                                            query], work)  # fmt: skip
        child = run_child([sys.executable, "-c", IN_PROCESS, str(db), json.dumps(queries)], work)
        if child.exit_code == 0:
            for name, (seconds, rows) in json.loads(child.stdout.strip().splitlines()[-1]).items():
                step = Step(f"view:{name} in-process", round(seconds, 3), None, rows)
                steps.append(step)
                print(json.dumps(asdict(step)), flush=True)
        lake, copied = work / "lake", work / "copy"
        measure(steps, "export", [*cli, "export", "--parquet", str(lake), "--db", str(db)], work)
        copied.mkdir()
        measure(steps, "copy", [sys.executable, "-c", COPY_SCRIPT, str(db), str(copied)], work)
        partitioned = work / "copy-partitioned"
        partitioned.mkdir()
        measure(steps, "copy-partitioned", [sys.executable, "-c", COPY_PARTITIONED, str(db),
                                             str(partitioned), json.dumps(RUN_TABLES)],
                work)  # fmt: skip
        if args.search_runs:
            search_db = work / "search.duckdb"
            measure(steps, "search_runs", [*cli, "extract", "--full", "--tracking-uri", uri,
                                           "--db", str(search_db)], work)  # fmt: skip
            steps[-1].rows = warehouse_run_count(search_db)
        if args.plain:
            child = measure(steps, "plain", [sys.executable, "-c", PLAIN_WAY, uri], work)
            if child.exit_code == 0:
                steps[-1].rows = json.loads(child.stdout.strip().splitlines()[-1])["runs"]
        return steps
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--experiments", type=int, default=10_000)
    parser.add_argument("--search-runs", action="store_true", help="Also extract via search_runs.")
    parser.add_argument("--plain", action="store_true", help="Also the plain mlflow.search_runs.")
    parser.add_argument("--work", type=Path, help="Where the work folder goes (default: /tmp).")
    parser.add_argument("--json", type=Path, help="Write the steps to this file.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args()
    steps = bench(args)
    if args.json:
        payload = {"runs": args.runs, "experiments": args.experiments}
        payload["steps"] = [asdict(s) for s in steps]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
