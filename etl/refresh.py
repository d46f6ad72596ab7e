"""The extract job: a tracking store (etl.extract, through one RunSource) into a new
warehouse (etl.warehouse), under the lock. Read top to bottom, `run_extract` is the
pipeline: read the previous warehouse once, plan, open the source, load experiments, runs
and listings, derive the views, log, swap in."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from etl.config import Config, Via, default
from etl.errors import ConfigError, JobFailed
from etl.extract import entities
from etl.extract.history import SkippedHistories
from etl.extract.open_source import open_source
from etl.extract.source import Mode, Plan, RunSource
from etl.extract.tracking import (
    check_tracking_uri,
    configure_tracking_client,
    default_tracking_uri,
    redact,
    sqlite_path,
)
from etl.progress import RunProgress
from etl.redact import remember_secrets_of
from etl.schema import SCHEMA_VERSION
from etl.warehouse import alias_history, extract_log
from etl.warehouse.build import WarehouseBuilder, check_writable
from etl.warehouse.extract_log import PreviousWarehouse, read_previous
from etl.warehouse.lock import warehouse_lock
from etl.warehouse.settings import ViewSettings
from etl.warehouse.sources import SourceWarehouse, combine_sources, source_warehouse
from etl.warehouse.views import create_views

log = logging.getLogger("runreport")

# A full extract that sees fewer than half the runs the warehouse holds (of at least this
# many) fails instead of replacing it, unless allowed: an emptied or wrong store.
SHRINK_GUARD_MIN_RUNS = 10
# Run tables a full extract keeps no row of a run it did not see in: a SQL store's tables
# can hold rows of runs that do not exist, which search_runs never returns.
ORPHAN_TABLES = ("params", "tags", "metrics", "metric_history")


@dataclass(frozen=True)
class ExtractOptions:
    """How an extract reads; `from_config` gives the settings' values (etl/config.py
    declares each one and its default once)."""

    via: Via = default("via")
    metric_history: bool = default("metric_history")
    page_size: int = default("page_size")
    workers: int = default("workers")
    overlap: timedelta = timedelta(minutes=default("overlap_minutes"))
    full_every: timedelta | None = None  # an incremental older than this is a full one
    timeout_seconds: int = default("tracking_timeout")  # a SQL store's connect and statements
    allow_shrink: bool = False
    entity_page_sizes: entities.PageSizes | None = None  # small pages exercise paging

    @classmethod
    def from_config(cls, config: Config, via: Via | None = None) -> ExtractOptions:
        return cls(
            via=via or config.via,
            metric_history=config.metric_history,
            page_size=config.page_size,
            workers=config.workers,
            overlap=timedelta(minutes=config.overlap_minutes),
            timeout_seconds=config.tracking_timeout,
        )


@dataclass
class ExtractSummary:
    db: Path
    mode: Mode
    runs: int
    experiments: int
    seconds: float


def run_extract(
    tracking_uri: str,
    db: Path,
    mode: Mode = "full",
    options: ExtractOptions | None = None,
    *,
    view_settings: ViewSettings | None = None,
    show_progress: bool | None = None,
    hold_lock: bool = True,
) -> ExtractSummary:
    """Extract every run into `db`: all of them (full), or only those that can have changed
    since the last extract (incremental; a full one when there is no usable previous
    warehouse: see `plan_extract`). Without `view_settings` the previous warehouse's
    settings are kept."""
    options = options or ExtractOptions()
    remember_secrets_of(tracking_uri)  # before anything can fail and show it
    check_writable(db)
    started = datetime.now(timezone.utc)
    with (
        warehouse_lock(db) if hold_lock else contextlib.nullcontext(),
        extract_log.failures_kept(db, started, mode, redact(tracking_uri)),
    ):
        uri = check_tracking_uri(tracking_uri)
        _check_not_the_store(db, uri)
        previous = read_previous(db)
        plan = plan_extract(db, uri, previous, mode, options)
        with (
            open_source(uri, options) as source,
            WarehouseBuilder(
                db, from_existing=plan.since is not None, keep_settings=view_settings is None
            ) as wh,
        ):
            experiments = source.experiments()
            wh.replace_tables(experiments)
            experiment_count = len(experiments["experiments"]["experiment_id"])
            with RunProgress(
                f"{plan.mode} extract", experiment_count, show_progress, plan.metric_history
            ) as progress:
                warnings = _load_runs(wh, source, plan, progress)
            if plan.since is None:
                wh.delete_orphan_rows(ORPHAN_TABLES)
                if not options.allow_shrink:
                    _check_shrink(db, previous, progress.runs)
            _load_listings(wh, source, started)
            create_views(wh.connection, view_settings)
            ended = datetime.now(timezone.utc)
            extract_log.record_extract(
                wh.connection,
                db,
                started_at=started,
                ended_at=ended,
                mode=plan.mode,
                tracking_uri=redact(uri),
                runs_seen=progress.runs,
                experiments_seen=experiment_count,
                watermark=extract_log.latest_run_start(wh.connection),
                warnings=warnings,
            )
            wh.commit()
            extract_log.failure_log(db).unlink(missing_ok=True)  # its rows are in extract_log now
    seconds = (ended - started).total_seconds()
    log.info(
        "%s extract: %d runs of %d experiments from %s into %s in %.1f s%s",
        plan.mode,
        progress.runs,
        experiment_count,
        redact(uri),
        db,
        seconds,
        f"; metric history of {warnings} runs not read" if warnings else "",
    )
    return ExtractSummary(db, plan.mode, progress.runs, experiment_count, seconds)


def plan_extract(
    db: Path, uri: str, previous: PreviousWarehouse | None, mode: Mode, options: ExtractOptions
) -> Plan:
    """The incremental plan asked for, or (with the reason logged) the full one when there
    is no earlier extract, the warehouse has another schema version, the last full extract
    is older than `options.full_every`, or the store is a file store."""
    full = Plan(options.metric_history)
    if previous is not None and previous.combined_sources:
        # a one-store extract would replace every source's runs
        raise ConfigError(
            f"the warehouse {db} combines the sources {', '.join(previous.combined_sources)}",
            "Extract it with the config that lists them as [[sources]], or choose another --db",
        )
    if mode == "full":
        return full
    if previous is None or previous.last_start is None:
        log.info("no earlier extract in %s: doing a full extract", db)
        return full
    if previous.schema_version != SCHEMA_VERSION:
        log.info(
            "the warehouse %s has schema version %s, this runreport writes %d: "
            "doing a full extract",
            db,
            previous.schema_version or "none",
            SCHEMA_VERSION,
        )
        return full
    last_full = previous.last_full_start
    if options.full_every is not None and (
        last_full is None or datetime.now(timezone.utc) - last_full > options.full_every
    ):
        log.info("no full extract in the last %s: doing a full extract", options.full_every)
        return full
    if uri.startswith("file:"):
        log.info(
            "file store: doing a full extract (an incremental one lists every run again "
            "there and takes longer)"
        )
        return full
    return Plan(
        options.metric_history,
        since=previous.last_start - options.overlap,
        stored_deleted=frozenset(previous.deleted_ids),
        was_running=frozenset(previous.running_ids),
    )


def _load_runs(wh: WarehouseBuilder, source: RunSource, plan: Plan, progress: RunProgress) -> int:
    """Append the plan's batches; returns the number of warnings (a run whose metric
    history could not be read is one; those are logged summed up by cause, and their
    count noted on the metric_history table for the report)."""
    warnings = 0
    skipped = SkippedHistories()
    for batch in source.batches(plan):
        # metric history is replaced only for runs that are re-read with it
        wh.delete_runs(list(batch.replaces), keep_history=not plan.metric_history)
        wh.append(batch.records)
        for line in skipped.add(batch.warnings):
            log.warning("%s", line)
            wh.notices.append(line)
        warnings += batch.counted_warnings
        progress.advance(batch.runs, batch.records)
    for line in skipped.summary():
        log.warning("%s", line)
    if plan.metric_history:
        wh.connection.execute(f"comment on table metric_history is '{skipped.table_note()}'")
    return warnings


def _load_listings(wh: WarehouseBuilder, source: RunSource, observed_at: datetime) -> None:
    """MLflow 3's listings, read whole on every extract, full or incremental: they are
    small next to the runs. Datasets arrive with the runs' batches; an incremental extract
    adds those of the runs it re-read, hence the deduplication."""
    records = source.listings()
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
    config: Config,
    mode: Mode,
    *,
    hold_lock: bool = True,
    allow_shrink: bool = False,
    full_every: timedelta | None = None,
) -> ExtractSummary:
    """run_extract with everything the configuration says (etl.config.resolve), as both
    `runreport extract` and `runreport run` call it."""
    configure_tracking_client(config.tracking_timeout, config.tracking_retries)
    view_settings = ViewSettings.given_in(config)

    def extract(uri: str, db: Path, via: Via | None, hold: bool) -> ExtractSummary:
        options = dataclasses.replace(
            ExtractOptions.from_config(config, via),
            allow_shrink=allow_shrink,
            full_every=full_every,
        )
        return run_extract(uri, db, mode, options, view_settings=view_settings, hold_lock=hold)

    if not config.sources:
        return extract(config.tracking_uri or default_tracking_uri(), config.db, None, hold_lock)
    return _extract_sources(config, extract, hold_lock)


def _extract_sources(
    config: Config,
    extract: Callable[[str, Path, Via | None, bool], ExtractSummary],
    hold_lock: bool,
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
            done.append(extract(source.tracking_uri, path, source.via, True))
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
    mode: Mode = "full" if any(d.mode == "full" for d in done) else "incremental"
    return ExtractSummary(config.db, mode, runs, experiments, seconds)


def _check_not_the_store(db: Path, uri: str) -> None:
    store = sqlite_path(uri) if uri.lower().startswith("sqlite") else None
    if store is not None and store.resolve() == db.resolve():
        raise ConfigError(
            f"--db {db} is the MLflow store itself ({redact(uri)})",
            "Choose another file for the warehouse, e.g. --db runs.duckdb",
        )


def _check_shrink(db: Path, previous: PreviousWarehouse | None, runs: int) -> None:
    if previous is None or previous.runs < SHRINK_GUARD_MIN_RUNS or runs * 2 >= previous.runs:
        return
    raise JobFailed(
        f"the store returned {runs} runs but the warehouse {db} holds {previous.runs}: "
        "a full extract would drop more than half of them",
        "The previous warehouse is unchanged; check the tracking URI and the store, or "
        "pass --allow-shrink if the runs were removed on purpose",
    )
