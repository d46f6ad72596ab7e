"""The extract job: MLflow (etl.extract) into a new warehouse (etl.load), under the lock."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from etl.errors import JobFailed
from etl.extract import incremental, reader
from etl.extract.parallel import (
    default_workers,
    experiment_tasks,
    page_records,
    parallel_run_records,
)
from etl.extract.tracking import check_tracking_uri, redact
from etl.progress import RunProgress
from etl.warehouse.build import WarehouseBuilder, check_writable
from etl.warehouse.lock import warehouse_lock
from etl.warehouse.views import create_views

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from etl.warehouse.settings import ViewSettings

log = logging.getLogger("runreport")


@dataclass
class ExtractSummary:
    db: Path
    mode: str
    runs: int
    experiments: int
    seconds: float


def run_extract(
    tracking_uri: str,
    db: Path,
    mode: str = "full",
    metric_history: bool = False,
    page_size: int = reader.DEFAULT_PAGE_SIZE,
    workers: int | None = None,
    overlap: timedelta = incremental.DEFAULT_OVERLAP,
    view_settings: ViewSettings | None = None,
    show_progress: bool | None = None,
    hold_lock: bool = True,
) -> ExtractSummary:
    """Extract every run into `db`: all of them (full), or only those that can have changed
    since the last extract (incremental, which falls back to full when there is none)."""
    check_writable(db)
    started = datetime.now(timezone.utc)
    with (
        warehouse_lock(db) if hold_lock else contextlib.nullcontext(),
        _failures_logged(db, started, mode, tracking_uri),
    ):
        uri = check_tracking_uri(tracking_uri)
        since = _incremental_since(db, overlap) if mode == "incremental" else None
        if mode == "incremental" and since is None:
            log.info("no earlier extract in %s: doing a full extract", db)
        mode = "incremental" if since is not None else "full"
        with _mlflow_errors(uri), WarehouseBuilder(db, from_existing=since is not None) as wh:
            client = reader.make_client(uri)
            experiments = list(reader.list_experiments(client))
            experiment_ids = [e.experiment_id for e in experiments]
            wh.connection.execute("delete from experiments; delete from experiment_tags")
            wh.append(reader.experiment_records(experiments))
            with RunProgress(f"{mode} extract", len(experiments), show_progress) as progress:
                if since is None:
                    pages = _all_run_records(
                        uri, client, experiment_ids, page_size, metric_history, workers
                    )
                else:
                    pages = _changed_run_records(
                        client, wh, experiment_ids, since, page_size, metric_history
                    )
                for count, records in pages:
                    wh.append(records)
                    progress.advance(count)
            create_views(wh.connection, view_settings)
            ended = datetime.now(timezone.utc)
            _log_extract(wh, started, ended, mode, uri, progress.runs, len(experiments))
            wh.commit()
            _failure_log(db).unlink(missing_ok=True)  # its rows are in extract_log now
    seconds = (ended - started).total_seconds()
    log.info(
        "%s extract: %d runs of %d experiments from %s into %s in %.1f s",
        mode,
        progress.runs,
        len(experiments),
        redact(uri),
        db,
        seconds,
    )
    return ExtractSummary(db, mode, progress.runs, len(experiments), seconds)


def _all_run_records(
    uri: str,
    client: MlflowClient,
    experiment_ids: list[str],
    page_size: int,
    metric_history: bool,
    workers: int | None,
) -> Iterator[tuple[int, reader.Records]]:
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(experiment_ids) > 1:
        yield from parallel_run_records(uri, experiment_ids, workers, page_size, metric_history)
        return
    for task in experiment_tasks(experiment_ids, 1):
        for runs in reader.run_pages(client, task, page_size=page_size):
            yield len(runs), page_records(runs, client, metric_history)


def _changed_run_records(
    client: MlflowClient,
    wh: WarehouseBuilder,
    experiment_ids: list[str],
    since: datetime,
    page_size: int,
    metric_history: bool,
) -> Iterator[tuple[int, reader.Records]]:
    for runs in incremental.changed_runs(client, wh.connection, experiment_ids, since, page_size):
        # metric history is replaced only for runs that are re-read
        wh.delete_runs([run.info.run_id for run in runs], keep_history=not metric_history)
        yield len(runs), page_records(runs, client, metric_history)


def _incremental_since(db: Path, overlap: timedelta) -> datetime | None:
    watermark = incremental.last_extract_start(db)
    return None if watermark is None else watermark - overlap


def _failure_log(db: Path) -> Path:
    """Failed extracts wait here, beside the untouched warehouse, for the next success."""
    return db.with_name(db.name + ".failed-extracts.jsonl")


@contextlib.contextmanager
def _failures_logged(db: Path, started: datetime, mode: str, uri: str) -> Iterator[None]:
    """A failed extract leaves the warehouse as it was; its extract_log row is written by
    the next extract that succeeds."""
    try:
        yield
    except JobFailed as exc:
        row = {
            "started_at": started.isoformat(),
            "ended_at": datetime.now(timezone.utc).isoformat(),
            "mode": mode,
            "tracking_uri": redact(uri),
            "error": exc.one_line(),
        }
        with contextlib.suppress(OSError), _failure_log(db).open("a") as pending:
            pending.write(json.dumps(row) + "\n")
        raise


def _log_extract(
    wh: WarehouseBuilder,
    started: datetime,
    ended: datetime,
    mode: str,
    uri: str,
    runs: int,
    experiments: int,
) -> None:
    con = wh.connection
    row = con.execute(
        "select coalesce(max(extract_id), 0) + 1, (select max(start_time) from runs) "
        "from extract_log"
    ).fetchone()
    next_id, latest_start = row if row else (1, None)
    with contextlib.suppress(FileNotFoundError):
        for line in _failure_log(wh.target).read_text().splitlines():
            failed = json.loads(line)
            con.execute(
                "insert into extract_log values (?, ?, ?, ?, ?, null, null, null, 'failed', ?)",
                [
                    next_id,
                    failed["started_at"],
                    failed["ended_at"],
                    failed["mode"],
                    failed["tracking_uri"],
                    failed["error"],
                ],
            )
            next_id += 1
    con.execute(
        "insert into extract_log values (?, ?, ?, ?, ?, ?, ?, ?, 'ok', null)",
        [next_id, started, ended, mode, redact(uri), runs, experiments, latest_start],
    )


class _mlflow_errors:
    """Turn MLflow's and the network's exceptions into one-line job failures."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from mlflow.exceptions import MlflowException

        if exc is None or not isinstance(exc, (MlflowException, OSError)):
            return
        message = (getattr(exc, "message", None) or str(exc)).strip()
        first_line = message.splitlines()[0] if message else repr(exc)
        raise JobFailed(
            f"extract from {redact(self.uri)} failed: {first_line[:300]}",
            "The previous warehouse is unchanged; check the tracking store and try again",
        ) from exc
