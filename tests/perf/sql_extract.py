"""A `--via sql` extract built only from public pieces, until etl/refresh.py wires it in.

    python tests/perf/sql_extract.py sqlite:///mlflow.db runs.duckdb [--since-ms MS]

etl.extract.sql_store yields the records; WarehouseBuilder loads them and create_views
adds the views. No lock and no extract_log row: those belong to etl.refresh.run_extract,
which the benchmark and the tests use instead as soon as `runreport extract --via sql`
exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script

from etl.extract.sql_store import open_snapshot
from etl.warehouse.build import WarehouseBuilder
from etl.warehouse.views import create_views


def extract_to_warehouse(
    uri: str, db: Path, since_ms: int | None = None, metric_history: bool = False
) -> int:
    """Every run into a new `db` (since_ms None), or, with since_ms, only the runs that can
    have changed since then, into a copy of the existing one. Returns the runs read."""
    runs = 0
    with (
        open_snapshot(uri) as store,
        WarehouseBuilder(db, from_existing=since_ms is not None) as wh,
    ):
        con = wh.connection
        con.execute("delete from experiments; delete from experiment_tags")
        wh.append(store.experiment_records())
        run_ids = None
        if since_ms is not None:
            deleted = {
                r
                for (r,) in con.execute(
                    "select run_id from runs where lifecycle_stage = 'deleted'"
                ).fetchall()
            }
            running = {r for (r,) in con.execute(
                "select run_id from runs where status = 'RUNNING'").fetchall()}  # fmt: skip
            run_ids = store.changed_run_ids(since_ms, deleted, running)
            wh.delete_runs(run_ids, keep_history=not metric_history)
        for count, records in store.run_records(run_ids, metric_history):
            wh.append(records)
            runs += count
        create_views(con)
        wh.commit()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("db", type=Path)
    parser.add_argument("--since-ms", type=int, help="Incremental: runs changed since then.")
    parser.add_argument("--metric-history", action="store_true")
    args = parser.parse_args()
    began = time.perf_counter()
    runs = extract_to_warehouse(args.uri, args.db, args.since_ms, args.metric_history)
    print(json.dumps({"runs_read": runs, "seconds": round(time.perf_counter() - began, 3)}))


if __name__ == "__main__":
    main()
