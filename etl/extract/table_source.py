"""The source that reads a SQL store's own tables (`--via sql`): SQLite, PostgreSQL, MySQL.

One read-only snapshot (etl/extract/sql_store.py) gives the same records as search_runs,
and the listings (logged models, the registry, traces: etl/extract/sql_listings.py) the
same as MlflowClient's, without importing MLflow or opening the store through it (which
would migrate an older store in place).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

from etl.extract import entities, sql_listings, sql_store
from etl.extract.parallel import read_ahead
from etl.extract.source import Batch, Plan, Records, RunKeys
from etl.schema import empty_records


class TableSource:
    name = "sql"

    def __init__(
        self,
        uri: str,
        timeout_seconds: int,
        entity_page_sizes: entities.PageSizes | None = None,
    ) -> None:
        self.uri = uri
        self.timeout_seconds = timeout_seconds
        self.entity_page_sizes = entity_page_sizes
        self._stack = contextlib.ExitStack()
        self.store: sql_store.StoreSnapshot | None = None
        self._experiment_ids: list[str] = []

    def __enter__(self) -> TableSource:
        self.store = self._stack.enter_context(
            sql_store.open_snapshot(self.uri, self.timeout_seconds)
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    @property
    def snapshot(self) -> sql_store.StoreSnapshot:
        assert self.store is not None, "use TableSource as a context manager"
        return self.store

    def experiments(self) -> Records:
        records = self.snapshot.experiment_records()
        self._experiment_ids = list(records["experiments"]["experiment_id"])
        return records

    def batches(self, plan: Plan) -> Iterator[Batch]:
        run_ids = None
        if plan.since is not None:
            run_ids = self.snapshot.changed_run_ids(
                plan.since_ms, set(plan.stored_deleted), set(plan.was_running)
            )
            # one delete of every changed run: the warehouse's deletes scan whole tables
            yield Batch(empty_records(), replaces=run_ids)
        # the store is read in a thread while the job writes the warehouse in its own
        for count, records in read_ahead(self.snapshot.run_records(run_ids, plan.metric_history)):
            yield Batch(records, count)

    def history(self, runs: RunKeys) -> Iterator[Batch]:
        for records in self.snapshot.history_records([run_id for run_id, keys in runs if keys]):
            yield Batch(records)

    def listings(self) -> Records:
        if not self.snapshot.has_listed_entities():
            return entities.no_listings()
        return sql_listings.listing_records(self.snapshot, self._experiment_ids)
