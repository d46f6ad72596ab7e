"""MLflow as the oracle: the same facts read through MlflowClient and from the warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
from mlflow import MlflowClient
from mlflow.entities import ViewType

Snapshot = dict[str, set[tuple]]


def mlflow_snapshot(uri: str) -> Snapshot:
    """Every experiment and run as MlflowClient returns them, one experiment at a time."""
    client = MlflowClient(uri)
    snap: Snapshot = {
        t: set() for t in ("experiments", "experiment_tags", "runs", "params", "tags", "metrics")
    }
    experiments = client.search_experiments(view_type=ViewType.ALL, max_results=50_000)
    for e in experiments:
        snap["experiments"].add(
            (
                e.experiment_id,
                e.name,
                e.artifact_location,
                e.lifecycle_stage,
                e.creation_time,
                e.last_update_time,
            )
        )
        snap["experiment_tags"] |= {(e.experiment_id, k, v) for k, v in e.tags.items()}
        token = None
        while True:
            page = client.search_runs(
                [e.experiment_id], run_view_type=ViewType.ALL, max_results=50_000, page_token=token
            )
            for run in page:
                i, d = run.info, run.data
                snap["runs"].add(
                    (
                        i.run_id,
                        i.experiment_id,
                        i.run_name,
                        i.status,
                        i.user_id,
                        i.start_time,
                        i.end_time,
                        i.lifecycle_stage,
                        i.artifact_uri,
                    )
                )
                snap["params"] |= {(i.run_id, k, v) for k, v in d.params.items()}
                snap["tags"] |= {(i.run_id, k, v) for k, v in d.tags.items()}
                snap["metrics"] |= {
                    (i.run_id, m.key, repr(m.value), m.step, m.timestamp) for m in d._metric_objs
                }
            token = page.token
            if not token:
                break
    return snap


def warehouse_snapshot(db: Path) -> Snapshot:
    con = duckdb.connect(str(db), read_only=True)
    queries = {
        "experiments": "select experiment_id, name, artifact_location, lifecycle_stage, "
        "epoch_ms(creation_time), epoch_ms(last_update_time) from experiments",
        "experiment_tags": "select experiment_id, key, value from experiment_tags",
        "runs": "select run_id, experiment_id, run_name, status, user_id, epoch_ms(start_time), "
        "epoch_ms(end_time), lifecycle_stage, artifact_uri from runs",
        "params": "select run_id, key, value from params",
        "tags": "select run_id, key, value from tags",
        "metrics": "select run_id, key, value, step, epoch_ms(timestamp) from metrics",
    }
    snap: Snapshot = {}
    try:
        for table, query in queries.items():
            rows = con.execute(query).fetchall()
            if table == "metrics":
                rows = [(r, k, repr(v), s, t) for r, k, v, s, t in rows]
            snap[table] = set(rows)
            assert len(snap[table]) == len(rows), f"duplicate rows in {table}"
    finally:
        con.close()
    return snap


def table_counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("experiments", "runs", "params", "metrics", "tags")
        }
    finally:
        con.close()
