"""Which runs an incremental extract re-reads.

MLflow runs have no "last updated" time, so we re-read every run that can have changed
since the previous extract's watermark (its start time, less an overlap for clock skew):

- runs started since then (new runs, new children of old parents);
- runs that ended since then (a reopened run gets a new end time);
- runs RUNNING now, and runs that were RUNNING at the previous extract (a running run
  logs metrics without any time changing; update_run can end one without a new end time);
- runs whose lifecycle stage changed (deleted or restored, also through their experiment).

Not seen: a metric, param or tag logged to a finished run with MlflowClient without
reopening it (no time changes), a run created later with a back-dated start time, and runs
removed for good by `mlflow gc`. The periodic full refresh repairs all of these.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import TYPE_CHECKING

from etl.config import default
from etl.extract import reader

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

RUN_ID_BATCH = 100


def changed_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    since: datetime,
    stored_deleted: AbstractSet[str],
    was_running: AbstractSet[str],
    page_size: int = default("page_size"),
) -> Iterator[list[Run]]:
    """Pages of runs to upsert; each run at most once. `stored_deleted` and `was_running`
    are the runs the warehouse holds as deleted and as RUNNING."""
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.entities import ViewType

    since_ms = int(since.timestamp() * 1000)
    seen: set[str] = set()

    def fresh(pages: Iterator[list[Run]]) -> Iterator[list[Run]]:
        for page in pages:
            new = [run for run in page if run.info.run_id not in seen]
            seen.update(run.info.run_id for run in new)
            if new:
                yield new

    yield from fresh(
        reader.run_pages(client, experiment_ids, f"attributes.start_time >= {since_ms}", page_size)
    )
    yield from fresh(
        reader.run_pages(client, experiment_ids, f"attributes.end_time >= {since_ms}", page_size)
    )

    # Deleted now: compare with the runs the warehouse holds as deleted (a small set).
    deleted_now: set[str] = set()
    for page in reader.run_pages(
        client, experiment_ids, "", page_size, view_type=ViewType.DELETED_ONLY
    ):
        deleted_now.update(run.info.run_id for run in page)
        yield from fresh(iter([[run for run in page if run.info.run_id not in stored_deleted]]))

    # Runs RUNNING now log metrics without any time changing (a reopened run too).
    yield from fresh(
        reader.run_pages(client, experiment_ids, "attributes.status = 'RUNNING'", page_size)
    )
    # Restored runs, and runs RUNNING at the last extract: one may have been marked
    # KILLED or FINISHED with update_run, which keeps its old end time.
    recheck = sorted(((stored_deleted - deleted_now) | was_running) - seen)
    for batch in reader.batched(recheck, RUN_ID_BATCH):
        ids = ", ".join(f"'{run_id}'" for run_id in batch)
        yield from fresh(
            reader.run_pages(client, experiment_ids, f"attributes.run_id IN ({ids})", page_size)
        )
