"""`runreport run`: the cron job. Extract, render into a dated folder, email, prune.

The lock is held for the whole job, so two cron entries on one warehouse never overlap.
A failure anywhere leaves the previous warehouse and the previous report whole, sends no
report, and (when configured) sends a short failure notice instead.
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
from etl.errors import RunreportError
from etl.load import connect
from etl.lock import warehouse_lock
from etl.tracking import default_tracking_uri

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
    if force_full or not db.exists():
        return "full"
    con = connect(db, read_only=True)
    try:
        row = con.execute(
            "select max(started_at) from extract_log where status = 'ok' and mode = 'full'"
        ).fetchone()
    except Exception:
        return "full"
    finally:
        con.close()
    last_full = row[0] if row else None
    if last_full is None or now - last_full > timedelta(days=full_refresh_days):
        return "full"
    return "incremental"


def run_job(config: Config, force_full: bool = False, send_email: bool = True) -> Path:
    """The whole job; returns the dated report folder."""
    now = datetime.now(timezone.utc)
    report_day = now.astimezone(ZoneInfo(config.timezone)).date()
    try:
        with warehouse_lock(config.db):
            return _run_locked(config, now, report_day, force_full, send_email)
    except RunreportError as exc:
        if exc.exit_code == 1 and config.on_failure:
            _notify_failure(config, exc)
        raise


def _run_locked(
    config: Config, now: datetime, report_day: date, force_full: bool, send_email: bool
) -> Path:
    from etl.refresh import run_extract
    from etl.report import render_report
    from etl.views import ViewSettings

    settings = ViewSettings(
        timezone=config.timezone,
        zombie_after_hours=config.zombie_after_hours,
        metric_directions=config.metric_directions,
    )
    mail = mail_settings(config)  # a mail setting mistake stops the job before it starts
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

    if send_email and mail.to_addrs:
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


def mail_settings(config: Config):  # type: ignore[no-untyped-def]
    from etl.mail import MailSettings

    return MailSettings.from_config(config)


def _notify_failure(config: Config, exc: RunreportError) -> None:
    try:
        from etl.mail import send_failure_notice

        send_failure_notice(
            mail_settings(config),
            config.on_failure,
            f"runreport failed: {exc.message[:120]}",
            f"The scheduled runreport job failed at {datetime.now(timezone.utc):%Y-%m-%d %H:%M} "
            f"UTC.\n\n{exc.one_line()}\n\nThe previous warehouse and report are unchanged.",
        )
    except Exception as notice_error:  # the job's own error matters more
        log.error("could not send the failure notice: %s", notice_error)
