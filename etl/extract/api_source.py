"""The source that reads through MLflow's client API: any tracking URI MLflow opens.

Runs come from `search_runs` paged to the end (etl/extract/reader.py), in worker processes
when asked for (etl/extract/parallel.py); an incremental plan re-reads the runs that can
have changed (etl/extract/incremental.py); history and listings through the client too.
On a server with MLflow workspaces every workspace is read, each selected in turn, and
its rows stamped with its name (etl/schema.py WORKSPACE_TABLES).
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
from etl.schema import DEFAULT_WORKSPACE, EXPERIMENT_TABLES, empty_records, stamp_workspace

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("runreport")


class ApiSource:
    name = "search_runs"

    def __init__(
        self,
        uri: str,
        page_size: int,
        workers: int,
        entity_page_sizes: entities.PageSizes | None = None,
    ) -> None:
        self.uri = uri
        self.page_size = page_size
        self.workers = workers
        self.entity_page_sizes = entity_page_sizes
        self.client = reader.make_client(uri)
        # workspace -> its experiments' ids, in the order they were listed
        self._experiment_ids: dict[str, list[str]] | None = None
        self._workspace_server = serves_workspaces(self.client)
        self._workspaces: list[str] | None = None  # listed once, by _each_workspace
        self._workspace_warning: str | None = None
        if uri.startswith("file:"):
            # MLflow logs a traceback for each folder it skips (on the root logger); the
            # extract names them in one warning line instead (etl/extract/file_store.py)
            logging.getLogger().addFilter(file_store.drop_skip_tracebacks)

    @property
    def experiment_ids(self) -> dict[str, list[str]]:
        if self._experiment_ids is None:
            self.experiments()
        assert self._experiment_ids is not None
        return self._experiment_ids

    def _each_workspace(self) -> Iterator[str]:
        """Every workspace, each selected while the caller reads it (MLflow's client sends
        the selected one with each request; worker processes inherit it). A store without
        workspaces has MLflow's default one only, and nothing is selected."""
        if not self._workspace_server:
            yield DEFAULT_WORKSPACE
            return
        # MLflow is imported where it is used (seconds a --via sql run skips)
        from mlflow.utils.workspace_context import WorkspaceContext

        if self._workspaces is None:
            self._workspaces, self._workspace_warning = listed_workspaces(self.client)
        for workspace in self._workspaces:
            with WorkspaceContext(workspace):
                yield workspace

    def experiments(self) -> Records:
        records = empty_records(EXPERIMENT_TABLES, workspace=True)
        self._experiment_ids = {}
        for workspace in self._each_workspace():
            listed = reader.experiment_records(reader.list_experiments(self.client))
            self._experiment_ids[workspace] = list(listed["experiments"]["experiment_id"])
            entities.merge(records, stamp_workspace(listed, workspace))
        return records

    def batches(self, plan: Plan) -> Iterator[Batch]:
        if self.uri.startswith("file:"):
            yield from self._file_store_warnings()
        ids_of = self.experiment_ids
        if self._workspace_warning:
            yield Batch(empty_records(), warnings=[self._workspace_warning])
        for workspace in self._each_workspace():
            if plan.since is None:
                yield from self._all_runs(ids_of.get(workspace, []), plan.metric_history)
            else:
                yield from self._changed_runs(ids_of.get(workspace, []), plan)

    def _changed_runs(self, experiment_ids: list[str], plan: Plan) -> Iterator[Batch]:
        assert plan.since is not None, "a full plan re-reads every run"
        for runs in incremental.changed_runs(
            self.client,
            experiment_ids,
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

    def _all_runs(self, ids: list[str], metric_history: bool) -> Iterator[Batch]:
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
        records = empty_records(entities.LISTED_TABLES, workspace=True)
        ids_of = self.experiment_ids
        for workspace in self._each_workspace():
            listed = entities.entity_records(
                self.client, self.uri, ids_of.get(workspace, []), self.entity_page_sizes
            )
            entities.merge(records, stamp_workspace(listed, workspace))
        return records


def serves_workspaces(client: MlflowClient) -> bool:
    """Whether the store has MLflow workspaces (3.10+, `mlflow server
    --enable-workspaces`). False for one that cannot say (an older server answers neither
    server-info nor server-features): the check never fails an extract."""
    try:
        return bool(getattr(client._tracking_client.store, "supports_workspaces", False))
    except Exception as exc:
        log.debug("workspace support not known: %s", exc)
        return False


def listed_workspaces(client: MlflowClient) -> tuple[list[str], str | None]:
    """Every workspace the server lists, by name; when it lists none to this client (a
    user the server's auth does not let list them), the one the client selects
    (MLFLOW_WORKSPACE, else 'default') and a warning line saying so."""
    # MLflow is imported where it is used (seconds a --via sql run skips)
    from mlflow.exceptions import MlflowException
    from mlflow.utils.workspace_context import get_request_workspace

    try:
        return sorted(workspace.name for workspace in client.list_workspaces()), None
    except MlflowException as exc:
        selected = get_request_workspace() or DEFAULT_WORKSPACE
        first_line = redact_text(str(exc.message).strip().splitlines()[0][:200])
        return [selected], (
            f"MLflow workspaces not listed ({first_line}): only the selected workspace "
            f"'{selected}' was read; let this user list workspaces, or set MLFLOW_WORKSPACE "
            "to read another"
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
