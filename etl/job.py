"""`runreport run`: the cron job. Extract, render into a dated folder, email, prune.

The dated folder: `report.out/YYYY-MM-DD` (the report's day), compared with the newest
dated report before it (what `report.out/latest` pointed at before today's report), so
rendering today's folder again, as `runreport report` and `email` do given a config,
keeps what changed since yesterday's. `latest` then points at today's folder.

The lock is held for the whole job, so two cron entries on one warehouse never overlap.
A failure in the extract or the render leaves the previous warehouse and the previous
report whole. An extract that fails against the tracking store (a JobFailed: server down
after its retries, a store that shrank) still gets today's report, rendered from the
previous warehouse: its banner says the extract failed, why, and how old the data is (the
failure waits beside the warehouse, etl/warehouse/extract_log.py), and it is mailed to the
leads as usual; the job still exits 1 so cron sees the failure. Any failure at all (a held
lock aside) sends one short notice to the on_failure recipients, saying what is true
afterwards; `--no-email` sends no mail at all, the notice included. A failed email leaves
the new report in place and exits 1. Pruning removes only dated folders the job wrote;
then reports/index.html lists the dated reports that remain.

Extract failures of the hourly and weekly `extract` cron lines notify too, once per failure
streak (`notify_extract_outcome`); a failed `run` extract counts in the same streak, and
the first extract that succeeds afterwards sends "recovered".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from etl.config import Config
from etl.errors import JobFailed, LockHeld, RunreportError
from etl.mail import MailSettings, email_report, send_failure_notice
from etl.redact import redact_text
from etl.warehouse import extract_log
from etl.warehouse.build import check_writable
from etl.warehouse.connect import open_warehouse
from etl.warehouse.extract_log import FailureStreak
from etl.warehouse.lock import warehouse_lock

if TYPE_CHECKING:
    from etl.alerts import AlertRunSummary
    from etl.extract.source import Mode
    from etl.refresh import ExtractSummary
    from etl.report.model import Clock
    from etl.report.render import ReportResult

log = logging.getLogger("runreport")
LATEST = "latest"
REPORT_MARKER = ".runreport-report"  # in each dated folder the job wrote: only those are pruned
MARKER_TEXT = "Written by runreport run; removed after report.retention_days.\n"


@contextlib.contextmanager
def step(name: str) -> Iterator[dict[str, object]]:
    """Log one line per step: its name, duration and whatever counts it reports."""
    counts: dict[str, object] = {}
    started = time.monotonic()
    yield counts
    details = " ".join(f"{k}={v}" for k, v in counts.items())
    log.info("step %s done in %.1f s %s", name, time.monotonic() - started, details)


def run_job(config: Config, force_full: bool = False, send_email: bool = True) -> Path:
    """The whole job; returns the dated report folder. Any failure (but a held lock) sends
    the on_failure notice once, unless `send_email` is off, then propagates."""
    now = datetime.now(timezone.utc)
    progress = JobProgress()
    try:
        check_writable(config.db)  # before the lock file, which would create a missing folder
        with warehouse_lock(config.db):
            return _run_locked(config, now, force_full, send_email, progress)
    except LockHeld:
        raise  # not a failure: the other run does the job
    except Exception as exc:
        sent = bool(config.on_failure and send_email) and _notify_failure(config, exc, progress)
        if progress.step == "extract":  # one failure of the streak the hourly extracts share
            _record_extract_failure(config, exc, notified=sent)
        raise


@dataclass
class JobProgress:
    """How far the job got, so the failure notice says what is true afterwards."""

    step: str = "start"
    folder: Path | None = None
    # after a failed extract: how far the report from the previous warehouse got
    # (None: not tried; "report", "email", "done")
    fallback: str | None = None
    data_as_of: str | None = None  # that report's data_as_of
    mailed_to: int = 0  # recipients of that report


def _run_locked(
    config: Config, now: datetime, force_full: bool, send_email: bool, progress: JobProgress
) -> Path:
    # MLflow (through the extract) and matplotlib (the report) load only when a job runs
    from etl.refresh import extract_from_config
    from etl.report.render import report_clock
    from etl.report.templates import Templates

    # a mail setting or template mistake stops the job before its extract
    mail = MailSettings.from_config(config) if send_email else None
    Templates(config.templates)
    progress.step = "extract"
    had_warehouse = config.db.is_file()
    try:
        with step("extract") as counts:
            # incremental, unless asked for full or the last full extract is too old (the
            # extract decides that from the previous warehouse, which it reads once)
            summary = extract_from_config(
                config,
                "full" if force_full else "incremental",
                hold_lock=False,
                full_every=timedelta(days=config.full_refresh_days),
            )
            counts.update(mode=summary.mode, runs=summary.runs, experiments=summary.experiments)
    except JobFailed as extract_error:
        # the store failed, not the setup: the failure waits beside the warehouse, so the
        # report from the previous one carries its banner
        if had_warehouse:
            report_from_previous(config, now, mail, progress, extract_error)
        raise
    if send_email:
        notify_extract_outcome(config, None)
    if config.alerts:
        from etl.alerts import evaluate_and_deliver  # requests and the rules: when configured

        progress.step = "alerts"
        with step("alerts") as counts:
            counts.update(
                _never_failing(
                    lambda: evaluate_and_deliver(config, hold_lock=False, count_in_extract_log=True)
                )
            )

    if config.export_parquet is not None:
        from etl.warehouse.export import export_parquet  # loaded only when asked for

        progress.step = "export"
        with step("export") as counts:
            exported = export_parquet(config.db, config.export_parquet)
            counts.update(folder=exported.folder, rows=sum(exported.rows.values()))

    progress.step = "report"
    with step("report") as counts:
        clock = report_clock(config, now)
        result = render_dated(config, clock=clock)
        folder = progress.folder = result.out
        counts.update(folder=folder, new_runs=result.figures.get("new_runs"))
    _post_digest(config, folder)

    if mail is not None and mail.to_addrs:
        progress.step = "email"
        with step("email") as counts:
            email_report(folder, mail, config.attach_csv, None)
            counts["recipients"] = len(mail.to_addrs)
    if mail is not None and config.mail_digests:
        progress.step = "team digests"
        with step("team digests") as counts:
            counts["teams"] = send_team_digests(config, mail, clock)

    progress.step = "prune"
    with step("prune") as counts:
        counts["removed"] = len(prune_reports(config.out, clock.today, config.retention_days))

    progress.step = "index"
    with step("index") as counts:
        counts["reports"] = rewrite_history_index(config)
    return folder


def _never_failing(deliver: Callable[[], AlertRunSummary]) -> dict[str, object]:
    """Alerts and chat never fail the job: what cannot be sent now is a warning, and the
    next run tries again."""
    try:
        summary = deliver()
    except RunreportError as exc:
        log.warning("alerts not delivered: %s", exc.one_line())
        return {"error": "see the warning"}
    return {"sent": summary.sent, "pending": summary.pending, "failed": summary.failed}


def _post_digest(config: Config, folder: Path) -> None:
    """The report's headline and changes to report.channels (figures from its report.json)."""
    if config.report_channels:
        from etl.alerts import post_report_digest  # requests: only when configured

        with step("chat") as counts:
            counts.update(
                _never_failing(lambda: post_report_digest(config, folder, hold_lock=False))
            )


def send_team_digests(config: Config, mail: MailSettings, clock: Clock) -> int:
    """[[mail.digests]]: each team a report of its experiments only (every section cut to
    them, what changed too), mailed to its own recipients; rendered in a temporary folder
    beside the reports and not kept. Returns how many teams got one."""
    # the report's libraries and the routing: only when digests are configured
    from etl.alerts import mail_digest_routes
    from etl.report.render import render_from_config

    routes = mail_digest_routes(config, workspace_experiments(config.db))
    for route in routes:
        with tempfile.TemporaryDirectory(prefix=".digest-", dir=config.out) as work:
            result = render_from_config(
                config,
                Path(work) / "digest",
                clock=clock,
                previous=previous_report(config.out, clock.today),
                experiments=route.experiments,
                workspaces=route.workspaces or None,
            )
            team = dataclasses.replace(mail, to_addrs=tuple(route.to))
            email_report(result.out, team, config.attach_csv, None)
    return len(routes)


def workspace_experiments(db: Path) -> list[tuple[str, str]]:
    """Every experiment as (its MLflow workspace, its name)."""
    with open_warehouse(db) as con:
        rows = con.execute("select workspace, name from experiments order by name").fetchall()
    return [(workspace, name) for workspace, name in rows]


def report_from_previous(
    config: Config,
    now: datetime,
    mail: MailSettings | None,
    progress: JobProgress,
    extract_error: Exception,
) -> None:
    """The extract failed: today's report from the warehouse as it was, mailed to the leads
    as usual, so they hear something at 06:00. Whatever fails here is logged; the extract's
    error is the job's. The warehouse is only read."""
    from etl.report.render import report_clock  # matplotlib and Jinja: only for a report

    log.warning(
        "extract failed (%s): rendering today's report from the previous warehouse",
        describe_failure(extract_error),
    )
    try:
        progress.fallback = "report"
        with step("report") as counts:
            clock = report_clock(config, now)
            result = render_dated(config, clock=clock)
            progress.folder = result.out
            progress.data_as_of = result.figures.get("data_as_of")
            counts.update(folder=result.out, data_as_of=progress.data_as_of)
        _post_digest(config, result.out)
        if mail is not None and mail.to_addrs:
            progress.fallback = "email"
            with step("email") as counts:
                email_report(result.out, mail, config.attach_csv, None)
                counts["recipients"] = progress.mailed_to = len(mail.to_addrs)
        progress.fallback = "done"
        with step("prune") as counts:
            counts["removed"] = len(prune_reports(config.out, clock.today, config.retention_days))
        with step("index") as counts:
            counts["reports"] = rewrite_history_index(config)
    except Exception as exc:
        log.error(
            "the report from the previous warehouse failed too, in its %s step: %s",
            progress.fallback,
            describe_failure(exc),
        )


def rewrite_history_index(config: Config) -> int:
    """report.out/index.html, listing the dated reports that remain; returns their count."""
    from etl.report.history_index import write_history_index  # Jinja: only when a job runs

    return write_history_index(config.out, templates=config.templates)


def render_dated(
    config: Config, *, since: date | None = None, clock: Clock | None = None
) -> ReportResult:
    """Render today's dated folder under `report.out` (anew, or again), compared with the
    newest dated report before today's; mark it as the job's and point `latest` at it.
    `clock`: the report's clock (default: now, in the warehouse's time zone)."""
    # the report's libraries (Jinja, matplotlib) load only when a report is rendered
    from etl.report.render import render_from_config, report_clock

    clock = clock or report_clock(config)  # the folder is named by the report's own day
    folder = config.out / clock.today.isoformat()
    public_url = f"{config.public_url.rstrip('/')}/{folder.name}" if config.public_url else None
    config.out.mkdir(parents=True, exist_ok=True)
    result = render_from_config(
        config,
        folder,
        since=since,
        clock=clock,
        public_url=public_url,
        previous=previous_report(config.out, clock.today),
    )
    (folder / REPORT_MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    point_latest(config.out, folder)
    return result


def previous_report(out: Path, today: date) -> Path | None:
    """The newest dated report folder before `today` (where `latest` pointed before
    today's report was written); None when there is none."""
    earlier = [
        folder
        for folder in out.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")
        if folder.name < today.isoformat() and is_runreport_report(folder)
    ]
    return max(earlier, default=None)


def point_latest(out: Path, folder: Path) -> None:
    """Swap the `latest` link to the new folder in one rename: a reader, or a kill at any
    moment, finds it on the old report or the new one, never missing."""
    link = out / LATEST
    for leftover in out.glob(f".{LATEST}.*"):  # links of runs killed before their rename
        if leftover.is_symlink():
            leftover.unlink(missing_ok=True)
    tmp = out / f".{LATEST}.{os.getpid()}"
    tmp.symlink_to(folder.name, target_is_directory=True)
    os.replace(tmp, link)


def is_runreport_report(folder: Path) -> bool:
    """A dated folder the job wrote: it holds the marker, or (reports from before the
    marker) a report.json for that very date."""
    if (folder / REPORT_MARKER).is_file():
        return True
    try:
        figures = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(figures, dict) and figures.get("date") == folder.name


def prune_reports(out: Path, today: date, retention_days: int) -> list[Path]:
    """Remove the job's dated report folders older than the retention (at least 1 day, so
    never today's); any other folder, even one named like a date, is left alone."""
    retention_days = max(1, retention_days)
    removed = []
    for folder in out.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.name != day.isoformat() or folder.is_symlink() or not folder.is_dir():
            continue  # fromisoformat also reads 20240101 and 2024-W01-1
        if (today - day).days > retention_days and is_runreport_report(folder):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def describe_failure(exc: BaseException) -> str:
    """The failure as one redacted line; a local file error says it is one."""
    if isinstance(exc, RunreportError):
        return exc.one_line()
    if isinstance(exc, OSError) and exc.filename is not None:
        return redact_text(
            f"local file error: {exc.strerror or exc.__class__.__name__}: {exc.filename}. "
            "Check the free disk space and the permissions of that path"
        )
    return RunreportError(f"{exc.__class__.__name__}: {exc}").one_line()


AFTERMATH = {
    "start": "Nothing was changed: the previous warehouse and report are unchanged.",
    "extract": "The previous warehouse and report are unchanged.",
    "export": "The warehouse was updated; the previous Parquet export and report are unchanged.",
    "report": "The warehouse was updated; the previous report is unchanged.",
    "email": "The warehouse and the report in {folder} were updated, but the report mail "
    "was not sent to every recipient.",
    "prune": "The warehouse, the report in {folder} and its mail are done; only removing old "
    "report folders failed.",
    "index": "The warehouse, the report in {folder} and its mail are done; only rewriting the "
    "reports' index (index.html beside the dated folders) failed.",
}
# after a failed extract, by how far the report from the previous warehouse got
FALLBACK_AFTERMATH = {
    "report": "The previous warehouse and report are unchanged; rendering today's report from "
    "the previous warehouse failed too (see the job's log).",
    "email": "The previous warehouse is unchanged. Today's report in {folder} was rendered "
    "from it (data as of {data_as_of}) with the failure on top, but its mail was not sent "
    "to every recipient.",
    "done": "The previous warehouse is unchanged. Today's report in {folder} was rendered "
    "from it (data as of {data_as_of}) with the failure on top{mailed}.",
}


def failure_notice(exc: BaseException, progress: JobProgress) -> tuple[str, str]:
    """(subject, body) of the on_failure notice; every word redacted."""
    line = describe_failure(exc)
    subject = redact_text(" ".join(f"runreport failed: {line}".split()))
    if len(subject) > 140:
        subject = subject[:139] + "…"
    if progress.step == "extract" and progress.fallback is not None:
        mailed = f", and mailed to {progress.mailed_to} recipient(s)" if progress.mailed_to else ""
        aftermath = FALLBACK_AFTERMATH[progress.fallback].format(
            folder=progress.folder, data_as_of=progress.data_as_of or "unknown", mailed=mailed
        )
    else:
        aftermath = AFTERMATH[progress.step].format(folder=progress.folder)
    body = (
        f"The scheduled runreport job on {socket.gethostname()} failed at "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, in its {progress.step} step.\n\n"
        f"{line}\n\n{aftermath}\n"
    )
    return subject, redact_text(body)


def _notify_failure(config: Config, exc: BaseException, progress: JobProgress) -> bool:
    return _send_notice(config, *failure_notice(exc, progress))


def _send_notice(config: Config, subject: str, body: str) -> bool:
    """Mail a notice to the on_failure recipients; False (and a logged error) when it
    could not be sent: the job's own error matters more."""
    try:
        send_failure_notice(MailSettings.from_config(config), config.on_failure, subject, body)
    except Exception as notice_error:
        log.error("could not send the failure notice: %s", describe_failure(notice_error))
        return False
    return True


# --- extract failure streaks: one notice when extracts start failing, one when they recover


def extract_notified(config: Config, mode: Mode, *, allow_shrink: bool = False) -> ExtractSummary:
    """What `runreport extract` (the hourly and weekly cron lines) runs: the extract, then
    the on_failure notice of its outcome, once per failure streak (notify_extract_outcome).
    The extract's own error propagates."""
    from etl.refresh import extract_from_config  # MLflow loads only when an extract runs

    try:
        summary = extract_from_config(config, mode, allow_shrink=allow_shrink)
    except Exception as exc:
        notify_extract_outcome(config, exc)
        raise
    notify_extract_outcome(config, None)
    return summary


def notify_extract_outcome(config: Config, error: BaseException | None) -> None:
    """Tell the on_failure recipients about an extract's outcome, once per failure streak:
    the first failure sends a notice, the failures after it none, and the first success
    after a notified streak sends "recovered". `error` is the extract's exception, None
    for a success; a held lock (exit 75) is neither. The streak is kept beside the
    warehouse (etl/warehouse/extract_log.py), so each cron process sees the last one's.
    Never raises: the extract's own outcome is what the command reports."""
    if isinstance(error, LockHeld):
        return
    try:
        if error is None:
            streak = extract_log.end_streak(config.db)
            if streak is not None and streak.notified_at is not None and config.on_failure:
                _send_notice(config, *recovered_notice(streak))
            return
        _record_extract_failure(config, error, notified=False, notify=True)
    except Exception as exc:  # a streak file that cannot be removed: say so, go on
        log.error("could not keep the extract failure streak: %s", describe_failure(exc))


def _record_extract_failure(
    config: Config, error: BaseException, *, notified: bool, notify: bool = False
) -> None:
    """Count a failed extract in the streak; with `notify`, send the streak's notice if
    none went out yet (`notified`: the caller sent one itself). Never raises."""
    now = datetime.now(timezone.utc)
    line = describe_failure(error)
    try:
        streak = extract_log.read_streak(config.db)
        if streak is None:
            streak = FailureStreak(started_at=now, failed_at=now, failures=1, error=line)
        else:
            streak.failed_at, streak.failures, streak.error = now, streak.failures + 1, line
        if notified and streak.notified_at is None:
            streak.notified_at = now
        wanted = notify and streak.notified_at is None and config.on_failure
        if wanted and _send_notice(config, *streak_notice(streak)):
            streak.notified_at = now
        extract_log.write_streak(config.db, streak)
    except Exception as exc:  # a folder that cannot be written: say so, go on
        log.error("could not keep the extract failure streak: %s", describe_failure(exc))


def streak_notice(streak: FailureStreak) -> tuple[str, str]:
    """(subject, body) of the one notice of a failure streak; every word redacted."""
    subject = redact_text(" ".join(f"runreport extract failed: {streak.error}".split()))
    if len(subject) > 140:
        subject = subject[:139] + "…"
    body = (
        f"The scheduled runreport extract on {socket.gethostname()} failed at "
        f"{streak.failed_at:%Y-%m-%d %H:%M} UTC.\n\n{streak.error}\n\n"
        "The previous warehouse is unchanged. This is the one notice of this failure: "
        "extracts that keep failing send no more, and the first one that succeeds sends "
        "a 'recovered' notice.\n"
    )
    return subject, redact_text(body)


def recovered_notice(streak: FailureStreak) -> tuple[str, str]:
    """(subject, body) of the notice that ends a failure streak."""
    failures = f"{streak.failures} failed extract{'s' if streak.failures != 1 else ''}"
    subject = f"runreport recovered: the extract succeeded after {failures}"
    body = (
        f"The runreport extract on {socket.gethostname()} succeeded at "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, after {failures} since "
        f"{streak.started_at:%Y-%m-%d %H:%M} UTC. The warehouse is up to date again.\n\n"
        f"The last failure ({streak.failed_at:%Y-%m-%d %H:%M} UTC): {streak.error}\n"
    )
    return subject, redact_text(body)
