"""The source that reads through MLflow's client API: any tracking URI MLflow opens.

Runs come from `search_runs` paged to the end (etl/extract/reader.py), in worker processes
when asked for (etl/extract/parallel.py); an incremental plan re-reads the runs that can
have changed (etl/extract/incremental.py); history and listings through the client too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from etl.errors import JobFailed
from etl.extract import entities, file_store, history, incremental, reader
from etl.extract.parallel import experiment_tasks, page_chunks, parallel_run_records
from etl.extract.source import Batch, Plan, Records, RunKeys
from etl.extract.tracking import redact
from etl.redact import redact_text
from etl.schema import empty_records

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("runreport")
DEFAULT_WORKSPACE = "default"
WORKSPACES_NAMED = 5  # the warning names this many workspaces, then counts the rest


class ApiSource:
    name = "search_runs"

    def __init__(
        self,
        uri: str,
        page_size: int,
        workers: int,
        entity_page_sizes: entities.PageSizes | None = None,
        experiment_ids: list[str] | None = None,
    ) -> None:
        self.uri = uri
        self.page_size = page_size
        self.workers = workers
        self.entity_page_sizes = entity_page_sizes
        self.client = reader.make_client(uri)
        self._experiment_ids = experiment_ids
        if uri.startswith("file:"):
            # MLflow logs a traceback for each folder it skips (on the root logger); the
            # extract names them in one warning line instead (etl/extract/file_store.py)
            logging.getLogger().addFilter(file_store.drop_skip_tracebacks)

    @property
    def experiment_ids(self) -> list[str]:
        if self._experiment_ids is None:
            self.experiments()
        assert self._experiment_ids is not None
        return self._experiment_ids

    def experiments(self) -> Records:
        records = reader.experiment_records(reader.list_experiments(self.client))
        self._experiment_ids = list(records["experiments"]["experiment_id"])
        return records

    def batches(self, plan: Plan) -> Iterator[Batch]:
        if self.uri.startswith("file:"):
            yield from self._file_store_warnings()
        yield from self._workspace_warnings()
        if plan.since is None:
            yield from self._all_runs(plan.metric_history)
            return
        for runs in incremental.changed_runs(
            self.client,
            self.experiment_ids,
            plan.since,
            plan.stored_deleted,
            plan.was_running,
            self.page_size,
        ):
            replaced = [run.info.run_id for run in runs]
            for count, records, warnings in page_chunks(runs, self.client, plan.metric_history):
                yield Batch(records, count, replaced, warnings)
                replaced = []  # the page's first batch deletes its runs' old rows

    def _file_store_warnings(self) -> Iterator[Batch]:
        root = Path(urlsplit(self.uri).path)
        skipped = file_store.skipped_entries(root)
        if skipped:
            line = file_store.warning_line(root, skipped)
            yield Batch(empty_records(), warnings=[line], warning_count=len(skipped))

    def _workspace_warnings(self) -> Iterator[Batch]:
        others = unread_workspaces(self.client)
        if others:
            yield Batch(
                empty_records(),
                warnings=[workspace_warning_line(others)],
                warning_count=len(others),
            )

    def _all_runs(self, metric_history: bool) -> Iterator[Batch]:
        ids = self.experiment_ids
        if self.workers > 1 and len(ids) > 1:
            chunks = parallel_run_records(
                self.uri, ids, self.workers, self.page_size, metric_history
            )
            for count, records, warnings in chunks:
                yield Batch(records, count, warnings=warnings)
            return
        for task in experiment_tasks(ids, 1):
            for runs in reader.run_pages(self.client, task, page_size=self.page_size):
                for count, records, warnings in page_chunks(runs, self.client, metric_history):
                    yield Batch(records, count, warnings=warnings)

    def history(self, runs: RunKeys) -> Iterator[Batch]:
        warnings: list[str] = []
        for records in history.history_chunks(self.client, runs, warnings):
            yield Batch(records, warnings=warnings[:])
            warnings.clear()

    def listings(self) -> Records:
        return entities.entity_records(
            self.client, self.uri, self.experiment_ids, self.entity_page_sizes
        )


def unread_workspaces(client: MlflowClient) -> list[str]:
    """The MLflow workspaces (3.10+, `mlflow server --enable-workspaces`) other than the one
    the client selects (MLFLOW_WORKSPACE, else 'default'): every listing and every run
    lookup sees the selected workspace only, so their experiments, runs and registry are
    not read. Empty for a store without workspaces, and for one that cannot say (an older
    server answers neither server-info nor server-features): the check never fails an
    extract."""
    store = client._tracking_client.store
    try:
        if not getattr(store, "supports_workspaces", False):
            return []
        # MLflow is imported where it is used (seconds a --via sql run skips)
        from mlflow.utils.workspace_context import get_request_workspace

        selected = get_request_workspace() or DEFAULT_WORKSPACE
        return sorted(w.name for w in client.list_workspaces() if w.name != selected)
    except Exception as exc:
        log.debug("workspaces not listed: %s", exc)
        return []


def workspace_warning_line(others: list[str]) -> str:
    shown = ", ".join(others[:WORKSPACES_NAMED])
    more = f" and {len(others) - WORKSPACES_NAMED} more" if len(others) > WORKSPACES_NAMED else ""
    return (
        f"MLflow workspaces not read: {len(others)} other than the selected one "
        f"({shown}{more}); an extract reads the workspace MLFLOW_WORKSPACE selects "
        "('default' when unset)"
    )


def raise_as_job_failure(exc: BaseException, uri: str) -> None:
    """MLflow's and the network's exceptions as one-line job failures naming the store;
    any other exception is left to propagate."""
    # imported only on failure: MLflow's exceptions module costs a successful extract time
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, (MlflowException, OSError)):
        return
    message = (getattr(exc, "message", None) or str(exc)).strip()
    first_line = redact_text(message.splitlines()[0] if message else repr(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        raise JobFailed(
            f"extract failed on a local file: {first_line[:300]}",
            "The previous warehouse is unchanged; check the free disk space and the "
            "permissions of that path",
        ) from exc
    raise JobFailed(
        f"extract from {redact(uri)} failed: {first_line[:300]}",
        "The previous warehouse is unchanged; check the tracking store (or raise "
        "tracking.timeout_seconds if it is slow) and try again",
    ) from exc
