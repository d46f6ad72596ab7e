"""The extract job: MLflow (etl.extract) into a new warehouse (etl.load), under the lock."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from etl import extract
from etl.errors import JobFailed
from etl.load import WarehouseBuilder, check_writable
from etl.lock import warehouse_lock
from etl.progress import RunProgress
from etl.tracking import check_tracking_uri, redact
from etl.views import create_views

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
    page_size: int = extract.DEFAULT_PAGE_SIZE,
    show_progress: bool | None = None,
) -> ExtractSummary:
    """Full extract of every run of every experiment into `db`."""
    uri = check_tracking_uri(tracking_uri)
    check_writable(db)
    started = datetime.now(timezone.utc)
    with warehouse_lock(db), _mlflow_errors(uri), WarehouseBuilder(db) as warehouse:
        client = extract.make_client(uri)
        experiments = list(extract.list_experiments(client))
        warehouse.append(extract.experiment_records(experiments))
        experiment_ids = [e.experiment_id for e in experiments]
        with RunProgress("extracting", len(experiments), show_progress) as progress:
            for page in extract.run_pages(client, experiment_ids, page_size=page_size):
                warehouse.append(extract.run_records(page))
                if metric_history:
                    for run in page:
                        keys = run.data.metrics.keys()
                        warehouse.append(
                            extract.metric_history_records(client, run.info.run_id, keys)
                        )
                progress.advance(len(page))
        create_views(warehouse.connection)
        ended = datetime.now(timezone.utc)
        _log_extract(warehouse, started, ended, "full", uri, progress.runs, len(experiments))
        warehouse.commit()
    seconds = (ended - started).total_seconds()
    log.info(
        "extracted %d runs of %d experiments from %s into %s in %.1f s",
        progress.runs, len(experiments), redact(uri), db, seconds,
    )
    return ExtractSummary(db, "full", progress.runs, len(experiments), seconds)


def _log_extract(
    warehouse: WarehouseBuilder,
    started: datetime,
    ended: datetime,
    mode: str,
    uri: str,
    runs: int,
    experiments: int,
) -> None:
    con = warehouse.connection
    row = con.execute(
        "select coalesce(max(extract_id), 0) + 1, "
        "(select max(start_time) from runs) from extract_log"
    ).fetchone()
    next_id, watermark = row if row else (1, None)
    con.execute(
        "insert into extract_log values (?, ?, ?, ?, ?, ?, ?, ?, 'ok', null)",
        [next_id, started, ended, mode, redact(uri), runs, experiments, watermark],
    )


class _mlflow_errors:
    """Turn MLflow's and the network's exceptions into one-line job failures."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        from mlflow.exceptions import MlflowException

        if exc is None or not isinstance(exc, (MlflowException, OSError)):
            return
        message = getattr(exc, "message", None) or str(exc)
        first_line = message.strip().splitlines()[0] if message.strip() else repr(exc)
        raise JobFailed(
            f"reading {redact(self.uri)} failed: {first_line[:300]}",
            "The previous warehouse is unchanged; check the tracking store and try again",
        ) from exc


