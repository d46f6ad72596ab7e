"""Benchmark of metric history (issue #13): `runreport extract --metric-history` on a store of
RUNS runs x 5 keys x STEPS steps, over SQLite and a real `mlflow server`.

    python -m tests.perf.bench_history --runs 10000 --steps 100      # 5,000,000 points
    python -m tests.perf.bench_history --runs-list 1000,10000        # memory against points

For each store size and transport it reports:

- extract: `runreport extract --metric-history` in a child process: wall time, peak memory
  of its process tree, and whether every point arrived (count in metric_history);
- reader: etl.extract.history.history_chunks alone over every run and key, in this process
  (points counted and dropped): points per second;
- loop: `MlflowClient.get_metric_history` per run and key, the way --metric-history worked
  before, timed on a random sample of (run, key) pairs and extrapolated to all of them
  (the full loop takes too long at 10,000 runs: it says so in the output).

The store is written in bulk in MLflow's own row shapes by tests/perf/make_store.py's
`write_runs` (a NaN is value 0 with is_nan, ±inf the largest double), experiments and
schema through MLflow's API.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.perf.bench_extract import mlflow_server, run_child, runreport_argv
from tests.perf.make_store import (
    CACHE_DIR,
    ExperimentInfo,
    PlannedRun,
    bulk_connection,
    sqlite_uri,
    write_chunk,
)

KEYS = ("loss", "val_loss", "accuracy", "val_accuracy", "lr")
EXPERIMENTS = 20
CHUNK_RUNS = 500
LOOP_SAMPLE_PAIRS = 300


@dataclass
class Row:
    transport: str
    runs: int
    points: int
    extract_seconds: float | None = None
    extract_peak_mb: float | None = None
    points_stored: int | None = None
    reader_seconds: float | None = None
    reader_points_per_second: float | None = None
    loop_points_per_second: float | None = None
    loop_sample_pairs: int = 0
    loop_extrapolated_seconds: float | None = None
    speedup: float | None = None
    exit_code: int | None = None


def build_store(path: Path, runs: int, steps: int) -> str:
    """RUNS runs in EXPERIMENTS experiments, each logging KEYS for `steps` steps."""
    from mlflow import MlflowClient

    uri = sqlite_uri(path)
    client = MlflowClient(uri)
    client.search_experiments()  # MLflow's migrations: MLflow's schema
    experiments = {}
    for index in range(EXPERIMENTS):
        experiment_id = client.create_experiment(f"history-{index:02d}")
        location = client.get_experiment(experiment_id).artifact_location
        experiments[experiment_id] = ExperimentInfo(experiment_id, location, 1.0)
    ids = list(experiments)
    rng = random.Random(0)
    start = int(time.time() * 1000) - 30 * 86_400_000
    con = bulk_connection(path)
    try:
        for first in range(0, runs, CHUNK_RUNS):
            chunk = []
            for number in range(first, min(runs, first + CHUNK_RUNS)):
                began = start + number * 1000
                scale = rng.uniform(0.5, 2.0)
                history = [
                    (key, scale / (step + 1) + rng.random() * 0.01, began + step, step)
                    for step in range(steps)
                    for key in KEYS
                ]
                name = f"run-{number}"
                chunk.append(
                    PlannedRun(
                        uuid.UUID(int=rng.getrandbits(128)).hex, ids[number % len(ids)], name,
                        "bench", "FINISHED", began, began + steps + 1000, False,
                        {"mlflow.runName": name, "mlflow.user": "bench"}, {}, history,
                    )
                )  # fmt: skip
            write_chunk(con, chunk, experiments, start)
    finally:
        con.close()
    return uri


def cached_history_store(runs: int, steps: int) -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"history-{runs}runs-{len(KEYS)}keys-{steps}steps.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        began = time.perf_counter()
        build_store(partial, runs, steps)
        partial.rename(path)
        print(f"built {path.name} in {time.perf_counter() - began:.0f} s", flush=True)
    return path


def run_keys(uri: str) -> list[tuple[str, list[str]]]:
    from etl.extract import reader

    client = reader.make_client(uri)
    experiments = [e.experiment_id for e in reader.list_experiments(client)]
    return [
        (run.info.run_id, list(run.data.metrics))
        for page in reader.run_pages(client, experiments)
        for run in page
    ]


def time_reader(uri: str, runs: list[tuple[str, list[str]]]) -> tuple[int, float]:
    from etl.extract import history, reader

    client = reader.make_client(uri)
    began = time.perf_counter()
    points = 0
    warnings: list[str] = []
    for chunk in history.history_chunks(client, runs, warnings):
        points += len(chunk["metric_history"]["run_id"])
    if warnings:
        raise RuntimeError(f"{len(warnings)} histories skipped, e.g. {warnings[0]}")
    return points, time.perf_counter() - began


def time_loop(uri: str, runs: list[tuple[str, list[str]]], pairs: int) -> tuple[int, int, float]:
    """(pairs read, points, seconds) of get_metric_history on a random sample of pairs."""
    from etl.extract import reader

    client = reader.make_client(uri)
    every = [(run_id, key) for run_id, keys in runs for key in keys]
    sample = random.Random(1).sample(every, min(pairs, len(every)))
    began = time.perf_counter()
    points = sum(len(client.get_metric_history(run_id, key)) for run_id, key in sample)
    return len(sample), points, time.perf_counter() - began


def points_stored(db: Path) -> int | None:
    import duckdb

    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("select count(*) from metric_history").fetchone()
        return int(row[0]) if row else None
    finally:
        con.close()


def measure(uri: str, transport: str, runs: int, steps: int, work: Path) -> Row:
    expected = runs * len(KEYS) * steps
    row = Row(transport, runs, expected)
    db = work / f"{transport}-{runs}.duckdb"
    child = run_child(
        [*runreport_argv(), "extract", "--tracking-uri", uri, "--db", str(db), "--metric-history"],
        work,
    )
    row.exit_code = child.exit_code
    row.extract_seconds = round(child.seconds, 1)
    row.extract_peak_mb = round(child.peak_tree_mb)
    row.points_stored = points_stored(db)
    db.unlink(missing_ok=True)
    listed = run_keys(uri)
    points, seconds = time_reader(uri, listed)
    if points != expected:
        raise RuntimeError(f"the reader read {points} points, the store holds {expected}")
    row.reader_seconds = round(seconds, 1)
    row.reader_points_per_second = round(points / seconds)
    pairs, loop_points, loop_seconds = time_loop(uri, listed, LOOP_SAMPLE_PAIRS)
    row.loop_sample_pairs = pairs
    row.loop_points_per_second = round(loop_points / loop_seconds)
    row.loop_extrapolated_seconds = round(loop_seconds / pairs * runs * len(KEYS), 1)
    row.speedup = round(row.reader_points_per_second / row.loop_points_per_second, 1)
    print(json.dumps(asdict(row)), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--runs-list", help="several store sizes, e.g. 1000,10000")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--no-http", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="write the rows to this file")
    args = parser.parse_args()
    sizes = [int(n) for n in args.runs_list.split(",")] if args.runs_list else [args.runs]
    rows = []
    with tempfile.TemporaryDirectory(prefix="runreport-bench-history-") as folder:
        work = Path(folder)
        for runs in sizes:
            store = cached_history_store(runs, args.steps)
            rows.append(measure(sqlite_uri(store), "sqlite", runs, args.steps, work))
            if not args.no_http:
                with mlflow_server(store, work) as uri:
                    rows.append(measure(uri, "http", runs, args.steps, work))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    ok = all(r.exit_code == 0 and r.points_stored == r.points for r in rows)
    print("all points extracted" if ok else "SOME POINTS MISSING", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
