"""`runreport run`: the cron job. Extract, render into a dated folder, email, prune.

The lock is held for the whole job, so two cron entries on one warehouse never overlap.
A failure in the extract or the render leaves the previous warehouse and the previous
report whole and sends no report; any failure (when configured) sends a short notice to
the on_failure recipients. A failed email leaves the new report in place and exits 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from etl.config import Config
from etl.errors import LockHeld, RunreportError
from etl.extract.incremental import last_extract_start
from etl.extract.tracking import default_tracking_uri
from etl.mail import MailSettings, send_failure_notice
from etl.warehouse.build import check_writable
from etl.warehouse.lock import warehouse_lock

log = logging.getLogger("runreport")
LATEST = "latest"


@contextlib.contextmanager
def step(name: str) -> Iterator[dict[str, object]]:
    """Log one line per step: its name, duration and whatever counts it reports."""
    counts: dict[str, object] = {}
    started = time.monotonic()
    yield counts
    details = " ".join(f"{k}={v}" for k, v in counts.items())
    log.info("step %s done in %.1f s %s", name, time.monotonic() - started, details)


def choose_mode(db: Path, full_refresh_days: int, now: datetime, force_full: bool) -> str:
    """Incremental, unless asked for full, or no full extract is younger than the limit."""
    last_full = None if force_full else last_extract_start(db, mode="full")
    if last_full is None or now - last_full > timedelta(days=full_refresh_days):
        return "full"
    return "incremental"


def run_job(config: Config, force_full: bool = False, send_email: bool = True) -> Path:
    """The whole job; returns the dated report folder."""
    now = datetime.now(timezone.utc)
    report_day = now.astimezone(ZoneInfo(config.timezone)).date()
    check_writable(config.db)  # before the lock file, which would create a missing folder
    try:
        with warehouse_lock(config.db):
            return _run_locked(config, now, report_day, force_full, send_email)
    except LockHeld:
        raise  # not a failure: the other run does the job
    except RunreportError as exc:
        if config.on_failure:
            _notify_failure(config, exc)
        raise


def _run_locked(
    config: Config, now: datetime, report_day: date, force_full: bool, send_email: bool
) -> Path:
    from etl.refresh import run_extract
    from etl.report.render import render_report
    from etl.warehouse.settings import ViewSettings

    settings = ViewSettings(
        timezone=config.timezone,
        zombie_after_hours=config.zombie_after_hours,
        metric_directions=config.metric_directions,
    )
    # a mail setting mistake stops the job before it starts
    mail = MailSettings.from_config(config) if send_email else None
    mode = choose_mode(config.db, config.full_refresh_days, now, force_full)
    with step("extract") as counts:
        summary = run_extract(
            config.tracking_uri or default_tracking_uri(),
            config.db,
            mode=mode,
            metric_history=config.metric_history,
            workers=config.workers,
            overlap=timedelta(minutes=config.overlap_minutes),
            view_settings=settings,
            hold_lock=False,
        )
        counts.update(mode=summary.mode, runs=summary.runs, experiments=summary.experiments)

    config.out.mkdir(parents=True, exist_ok=True)
    folder = config.out / report_day.isoformat()
    with step("report") as counts:
        result = render_report(config.db, folder, days=config.days, templates=config.templates)
        point_latest(config.out, folder)
        counts.update(folder=folder, new_runs=result.figures.get("new_runs"))

    if mail is not None and mail.to_addrs:
        with step("email") as counts:
            from etl.mail import email_report

            email_report(folder, mail, config.attach_csv, None)
            counts["recipients"] = len(mail.to_addrs)

    with step("prune") as counts:
        counts["removed"] = len(prune_reports(config.out, report_day, config.retention_days))
    return folder


def point_latest(out: Path, folder: Path) -> None:
    """Swap the `latest` link to the new folder in one rename; readers never see it missing."""
    link = out / LATEST
    tmp = out / f".{LATEST}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(folder.name, target_is_directory=True)
    os.replace(tmp, link)


def prune_reports(out: Path, today: date, retention_days: int) -> list[Path]:
    """Remove dated report folders older than the retention; nothing else is touched."""
    removed = []
    for folder in out.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and not folder.is_symlink() and (today - day).days > retention_days:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _notify_failure(config: Config, exc: RunreportError) -> None:
    try:
        send_failure_notice(
            MailSettings.from_config(config),
            config.on_failure,
            f"runreport failed: {exc.message[:120]}",
            f"The scheduled runreport job failed at {datetime.now(timezone.utc):%Y-%m-%d %H:%M} "
            f"UTC.\n\n{exc.one_line()}\n\nThe previous warehouse and report are unchanged.",
        )
    except Exception as notice_error:  # the job's own error matters more
        log.error("could not send the failure notice: %s", notice_error)
