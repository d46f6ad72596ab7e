"""The extract job: MLflow (etl.extract) into a new warehouse (etl.load), under the lock."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from etl.errors import ConfigError, JobFailed
from etl.extract import entities, incremental, reader, sql_store
from etl.extract.parallel import (
    default_workers,
    experiment_tasks,
    page_chunks,
    parallel_run_records,
    read_ahead,
)
from etl.extract.tracking import check_tracking_uri, redact, sqlite_path
from etl.progress import RunProgress
from etl.redact import redact_text
from etl.schema import SCHEMA_VERSION
from etl.warehouse import alias_history, extract_log
from etl.warehouse.build import WarehouseBuilder, check_writable
from etl.warehouse.extract_log import PreviousWarehouse, read_previous
from etl.warehouse.lock import warehouse_lock
from etl.warehouse.sources import (
    SourceWarehouse,
    combine_sources,
    combined_source_names,
    source_warehouse,
)
from etl.warehouse.views import create_views

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from etl.config import Config
    from etl.warehouse.settings import ViewSettings

log = logging.getLogger("runreport")

# A full extract that sees fewer than half the runs the warehouse holds (of at least this
# many) fails instead of replacing it, unless allowed: an emptied or wrong store.
SHRINK_GUARD_MIN_RUNS = 10


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
    allow_shrink: bool = False,
    via: str = "search_runs",
    entity_page_sizes: entities.PageSizes | None = None,
) -> ExtractSummary:
    """Extract every run into `db`: all of them (full), or only those that can have changed
    since the last extract (incremental, which falls back to full when there is none, the
    warehouse has another schema version or the store is a file store). Without
    `view_settings` the previous warehouse's settings are kept. `via="sql"` reads a SQL
    store's tables directly (etl.extract.sql_store) instead of paging search_runs."""
    check_writable(db)
    started = datetime.now(timezone.utc)
    with (
        warehouse_lock(db) if hold_lock else contextlib.nullcontext(),
        _failures_logged(db, started, mode, tracking_uri),
    ):
        uri = check_tracking_uri(tracking_uri)
        _check_not_the_store(db, uri)
        previous = read_previous(db)
        since = _incremental_since(db, uri, previous, overlap) if mode == "incremental" else None
        mode = "incremental" if since is not None else "full"
        with contextlib.ExitStack() as stack:
            store = stack.enter_context(sql_store.open_snapshot(uri)) if via == "sql" else None
            if store is None:
                stack.enter_context(_mlflow_errors(uri))
            wh = stack.enter_context(
                WarehouseBuilder(
                    db, from_existing=since is not None, keep_settings=view_settings is None
                )
            )
            if store is None:
                client = reader.make_client(uri)
                experiment_records = reader.experiment_records(reader.list_experiments(client))
            else:
                experiment_records = store.experiment_records()
            experiment_ids: list[str] = experiment_records["experiments"]["experiment_id"]
            experiments = len(experiment_ids)
            wh.connection.execute("delete from experiments; delete from experiment_tags")
            wh.append(experiment_records)
            warnings = 0
            with RunProgress(f"{mode} extract", experiments, show_progress) as progress:
                if store is not None:
                    pages = _sql_store_records(store, wh, previous, since, metric_history)
                elif since is None or previous is None:
                    pages = _all_run_records(
                        uri, client, experiment_ids, page_size, metric_history, workers
                    )
                else:
                    pages = _changed_run_records(
                        client, wh, previous, experiment_ids, since, page_size, metric_history
                    )
                for count, records, page_warnings in pages:
                    wh.append(records)
                    for line in page_warnings:
                        log.warning("%s", line)
                    warnings += len(page_warnings)
                    progress.advance(count)
            if since is None and not allow_shrink:
                _check_shrink(db, previous, progress.runs)
            with _mlflow_errors(uri):
                # a SQL store with nothing to list spares the MLflow import (seconds)
                listed = store is None or store.has_listed_entities()
                _load_entities(wh, uri, experiment_ids, started, entity_page_sizes, listed)
            create_views(wh.connection, view_settings)
            ended = datetime.now(timezone.utc)
            _log_extract(wh, started, ended, mode, uri, progress.runs, experiments, warnings)
            wh.commit()
            _failure_log(db).unlink(missing_ok=True)  # its rows are in extract_log now
    seconds = (ended - started).total_seconds()
    log.info(
        "%s extract: %d runs of %d experiments from %s into %s in %.1f s%s",
        mode,
        progress.runs,
        experiments,
        redact(uri),
        db,
        seconds,
        f"; {warnings} metric histories skipped" if warnings else "",
    )
    return ExtractSummary(db, mode, progress.runs, experiments, seconds)


def _load_entities(
    wh: WarehouseBuilder,
    uri: str,
    experiment_ids: list[str],
    observed_at: datetime,
    page_sizes: entities.PageSizes | None,
    listed: bool = True,
) -> None:
    """MLflow 3's listings (logged models, the registry, traces), read whole on every
    extract, full or incremental: they are small next to the runs. Datasets arrive with
    the runs' pages; an incremental extract adds those of the runs it re-read. With
    `listed` False the store is known to hold none of them."""
    if listed:
        records = entities.entity_records(reader.make_client(uri), uri, experiment_ids, page_sizes)
    else:
        records = entities.no_listings()
    wh.replace_tables(records)
    wh.deduplicate("datasets")
    moves = alias_history.record_moves(wh.connection, observed_at)
    log.info(
        "%d logged models, %d model versions, %d traces; %d alias changes recorded",
        len(records["logged_models"]["model_id"]),
        len(records["model_versions"]["name"]),
        len(records["traces"]["trace_id"]),
        moves,
    )


def extract_from_config(
    config: Config, mode: str, *, hold_lock: bool = True, allow_shrink: bool = False
) -> ExtractSummary:
    """run_extract with everything the configuration says (etl.config.resolve), as both
    `runreport extract` and `runreport run` call it."""
    from etl.extract.tracking import default_tracking_uri
    from etl.extract.tracking_timeout import bound_tracking_wait
    from etl.warehouse.settings import ViewSettings

    bound_tracking_wait(config.tracking_timeout)

    def extract(uri: str, db: Path, via: str, hold: bool) -> ExtractSummary:
        return run_extract(
            uri,
            db,
            mode=mode,
            metric_history=config.metric_history,
            page_size=config.page_size,
            workers=config.workers,
            overlap=timedelta(minutes=config.overlap_minutes),
            view_settings=ViewSettings.given_in(config),
            hold_lock=hold,
            allow_shrink=allow_shrink,
            via=via,
        )

    if not config.sources:
        combined = combined_source_names(config.db)
        if combined:  # a one-store extract would replace every source's runs
            raise ConfigError(
                f"the warehouse {config.db} combines the sources {', '.join(combined)}",
                "Extract it with the config that lists them as [[sources]], or choose another --db",
            )
        uri = config.tracking_uri or default_tracking_uri()
        return extract(uri, config.db, config.via, hold_lock)
    return _extract_sources(config, extract, hold_lock)


def _extract_sources(
    config: Config, extract: Callable[[str, Path, str, bool], ExtractSummary], hold_lock: bool
) -> ExtractSummary:
    """[[sources]]: each store into its own warehouse, then the combined one swapped in
    (etl/warehouse/sources.py). A failing source fails the job before the combined
    warehouse changes; the sources extracted before it keep their new state."""
    check_writable(config.db)
    if config.tracking_uri:
        log.info("[[sources]] lists the tracking stores: tracking.uri is not used")
    started = datetime.now(timezone.utc)
    with warehouse_lock(config.db) if hold_lock else contextlib.nullcontext():
        done = []
        for source in config.sources:
            path = source_warehouse(config.db, source.name)
            path.parent.mkdir(exist_ok=True)
            log.info("source %s: %s", source.name, redact(source.tracking_uri))
            done.append(extract(source.tracking_uri, path, source.via or config.via, True))
        pairs = zip(config.sources, done, strict=True)
        combine_sources(config.db, [SourceWarehouse(s.name, d.db) for s, d in pairs])
    seconds = (datetime.now(timezone.utc) - started).total_seconds()
    runs, experiments = sum(d.runs for d in done), sum(d.experiments for d in done)
    log.info(
        "%d sources combined into %s: %d runs of %d experiments in %.1f s",
        len(done),
        config.db,
        runs,
        experiments,
        seconds,
    )
    mode = "full" if any(d.mode == "full" for d in done) else "incremental"
    return ExtractSummary(config.db, mode, runs, experiments, seconds)


def _check_not_the_store(db: Path, uri: str) -> None:
    store = sqlite_path(uri) if uri.lower().startswith("sqlite") else None
    if store is not None and store.resolve() == db.resolve():
        raise ConfigError(
            f"--db {db} is the MLflow store itself ({redact(uri)})",
            "Choose another file for the warehouse, e.g. --db runs.duckdb",
        )


def _incremental_since(
    db: Path, uri: str, previous: PreviousWarehouse | None, overlap: timedelta
) -> datetime | None:
    """The time an incremental extract re-reads from, or None (with the reason logged)
    when a full extract is the one to do."""
    if previous is None or previous.last_start is None:
        log.info("no earlier extract in %s: doing a full extract", db)
        return None
    if previous.schema_version != SCHEMA_VERSION:
        log.info(
            "the warehouse %s has schema version %s, this runreport writes %d: "
            "doing a full extract",
            db,
            previous.schema_version or "none",
            SCHEMA_VERSION,
        )
        return None
    if uri.startswith("file:"):
        log.info(
            "file store: doing a full extract (an incremental one lists every run again "
            "there and takes longer)"
        )
        return None
    return previous.last_start - overlap


def _check_shrink(db: Path, previous: PreviousWarehouse | None, runs: int) -> None:
    if previous is None or previous.runs < SHRINK_GUARD_MIN_RUNS or runs * 2 >= previous.runs:
        return
    raise JobFailed(
        f"the store returned {runs} runs but the warehouse {db} holds {previous.runs}: "
        "a full extract would drop more than half of them",
        "The previous warehouse is unchanged; check the tracking URI and the store, or "
        "pass --allow-shrink if the runs were removed on purpose",
    )


def _all_run_records(
    uri: str,
    client: MlflowClient,
    experiment_ids: list[str],
    page_size: int,
    metric_history: bool,
    workers: int | None,
) -> Iterator[tuple[int, reader.Records, list[str]]]:
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(experiment_ids) > 1:
        yield from parallel_run_records(uri, experiment_ids, workers, page_size, metric_history)
        return
    for task in experiment_tasks(experiment_ids, 1):
        for runs in reader.run_pages(client, task, page_size=page_size):
            yield from page_chunks(runs, client, metric_history)


def _sql_store_records(
    store: sql_store.StoreSnapshot,
    wh: WarehouseBuilder,
    previous: PreviousWarehouse | None,
    since: datetime | None,
    metric_history: bool,
) -> Iterator[tuple[int, reader.Records, list[str]]]:
    run_ids = None
    if since is not None and previous is not None:
        since_ms = int(since.timestamp() * 1000)
        run_ids = store.changed_run_ids(since_ms, previous.deleted_ids, previous.running_ids)
        wh.delete_runs(run_ids, keep_history=not metric_history)
    # the store is read in a thread, the warehouse written here: DuckDB's connection
    # stays in this thread
    for count, records in read_ahead(store.run_records(run_ids, metric_history)):
        yield count, records, []
    if run_ids is None:
        wh.delete_orphan_rows(sql_store.ORPHANS_LEFT)


def _changed_run_records(
    client: MlflowClient,
    wh: WarehouseBuilder,
    previous: PreviousWarehouse,
    experiment_ids: list[str],
    since: datetime,
    page_size: int,
    metric_history: bool,
) -> Iterator[tuple[int, reader.Records, list[str]]]:
    for runs in incremental.changed_runs(
        client, experiment_ids, since, previous.deleted_ids, previous.running_ids, page_size
    ):
        # metric history is replaced only for runs that are re-read
        wh.delete_runs([run.info.run_id for run in runs], keep_history=not metric_history)
        yield from page_chunks(runs, client, metric_history)


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
    warnings: int,
) -> None:
    con = wh.connection
    next_id = extract_log.next_extract_id(con)
    with contextlib.suppress(FileNotFoundError):
        for line in _failure_log(wh.target).read_text().splitlines():
            failed = json.loads(line)
            extract_log.insert_row(
                con,
                extract_id=next_id,
                started_at=failed["started_at"],
                ended_at=failed["ended_at"],
                mode=failed["mode"],
                tracking_uri=failed["tracking_uri"],
                status="failed",
                error=failed["error"],
            )
            next_id += 1
    extract_log.insert_row(
        con,
        extract_id=next_id,
        started_at=started,
        ended_at=ended,
        mode=mode,
        tracking_uri=redact(uri),
        runs_seen=runs,
        experiments_seen=experiments,
        watermark=extract_log.latest_run_start(con),
        status="ok",
        warnings=warnings,
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
        if exc is None:
            return  # importing MLflow's exceptions costs time a successful extract needn't pay
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
            f"extract from {redact(self.uri)} failed: {first_line[:300]}",
            "The previous warehouse is unchanged; check the tracking store (or raise "
            "tracking.timeout_seconds if it is slow) and try again",
        ) from exc
