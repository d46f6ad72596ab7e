"""Which runs an incremental extract re-reads.

MLflow runs have no "last updated" time, so we re-read every run that can have changed
since the previous extract's watermark (its start time, less an overlap for clock skew):

- runs started since then (new runs, new children of old parents);
- runs that ended since then (a reopened run gets a new end time);
- runs RUNNING now (they log metrics without any time changing; those RUNNING at the
  previous extract that have ended since carry a new end time);
- runs whose lifecycle stage changed (deleted or restored, also through their experiment).

Not seen: a metric, param or tag logged to a finished run with MlflowClient without
reopening it (no time changes), a run created later with a back-dated start time, and runs
removed for good by `mlflow gc`. The periodic full refresh repairs all of these.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb

from etl import extract

RUN_ID_BATCH = 100
DEFAULT_OVERLAP = timedelta(hours=1)


def previous_watermark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """Start time of the last successful extract, or None when there is none."""
    row = con.execute("select max(started_at) from extract_log where status = 'ok'").fetchone()
    return row[0] if row else None


def changed_runs(
    client: extract.MlflowClient,
    con: duckdb.DuckDBPyConnection,
    experiment_ids: list[str],
    since: datetime,
    page_size: int = extract.DEFAULT_PAGE_SIZE,
) -> Iterator[list]:
    """Pages of runs to upsert; each run at most once."""
    from mlflow.entities import ViewType

    since_ms = int(since.timestamp() * 1000)
    seen: set[str] = set()

    def fresh(pages: Iterator[list]) -> Iterator[list]:
        for page in pages:
            new = [run for run in page if run.info.run_id not in seen]
            seen.update(run.info.run_id for run in new)
            if new:
                yield new

    yield from fresh(
        extract.run_pages(client, experiment_ids, f"attributes.start_time >= {since_ms}", page_size)
    )
    yield from fresh(
        extract.run_pages(client, experiment_ids, f"attributes.end_time >= {since_ms}", page_size)
    )

    # Deleted now: compare with what the warehouse holds (the deleted set is small).
    stored_stage = dict(con.execute("select run_id, lifecycle_stage from runs").fetchall())
    deleted_now: set[str] = set()
    for page in extract.run_pages(
        client, experiment_ids, "", page_size, view_type=ViewType.DELETED_ONLY
    ):
        deleted_now.update(run.info.run_id for run in page)
        yield from fresh(
            iter([[run for run in page if stored_stage.get(run.info.run_id) != "deleted"]])
        )

    restored = sorted(
        run_id
        for run_id, stage in stored_stage.items()
        if stage == "deleted" and run_id not in deleted_now and run_id not in seen
    )
    for batch in extract.batched(restored, RUN_ID_BATCH):
        ids = ", ".join(f"'{run_id}'" for run_id in batch)
        yield from fresh(
            extract.run_pages(client, experiment_ids, f"attributes.run_id IN ({ids})", page_size)
        )
    # Runs still running log new metrics without any time changing; runs that were
    # running and have ended since carry a new end time, so the query above found them.
    yield from fresh(
        extract.run_pages(client, experiment_ids, "attributes.status = 'RUNNING'", page_size)
    )
