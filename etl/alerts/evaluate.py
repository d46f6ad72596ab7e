"""Evaluate every rule against the warehouse and deliver what is new: each alert once per
channel, a failed delivery retried in this run (with backoff) and at the next run, marked
failed after alerting.max_attempts runs. Nothing here fails the caller's job: a channel
that is down, a rule that cannot be evaluated, each is a warning, counted."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone

import duckdb

from etl.alerts import channels as formats
from etl.alerts import rules, state
from etl.alerts.deliver import DeliveryFailed, RetryPolicy, env_url, post, send_mail
from etl.alerts.model import Alert, AlertRunSummary
from etl.config import Channel, Config
from etl.errors import ConfigError, RunreportError
from etl.report.data import last_tracking_uri
from etl.report.links import Links
from etl.warehouse.connect import BUILD_HINT, open_warehouse
from etl.warehouse.lock import warehouse_lock
from etl.warehouse.settings import ViewSettings, apply_settings

log = logging.getLogger("runreport")
LATEST_REPORT = "latest/index.html"  # report.out/latest points at the newest report


def policy_of(config: Config) -> RetryPolicy:
    return RetryPolicy(config.alert_retries, config.alert_backoff, config.alert_timeout)


@contextlib.contextmanager
def warehouse(
    config: Config, *, write: bool, hold_lock: bool
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse with the config's view settings laid over it; under its lock when
    writing (unless the caller holds it)."""
    if not config.db.is_file():
        raise ConfigError(f"no warehouse at {config.db}", BUILD_HINT)
    locked = warehouse_lock(config.db) if write and hold_lock else contextlib.nullcontext()
    with locked:
        con = open_warehouse(config.db, read_only=not write)
        try:
            settings = ViewSettings.given_in(config)
            if settings is not None:
                apply_settings(con, settings)
            if write:
                state.create_tables(con)
            yield con
        finally:
            con.close()


def links_of(config: Config, con: duckdb.DuckDBPyConnection) -> Links:
    return Links.resolve(config.mlflow_ui_url, None, last_tracking_uri(con) or config.tracking_uri)


def evaluate_and_deliver(
    config: Config,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    hold_lock: bool = True,
    count_in_extract_log: bool = False,
) -> AlertRunSummary:
    """Evaluate the [[alerts]] rules and deliver what is new and what is pending.

    `dry_run`: what would be sent is in `previews`; nothing is sent or recorded.
    `hold_lock=False` when the caller holds the warehouse lock (`runreport run`).
    `count_in_extract_log`: add the warnings to the newest extract_log row."""
    summary = AlertRunSummary()
    if not config.alerts and not config.channels:
        return summary
    now = now or datetime.now(timezone.utc)
    with warehouse(config, write=not dry_run, hold_lock=hold_lock) as con:
        links = links_of(config, con)
        report_url = f"{config.public_url.rstrip('/')}/{LATEST_REPORT}" if config.public_url else ""
        _evaluate(config, con, now, links, report_url, summary, dry_run)
        if dry_run:
            return summary
        deliver_pending(config, con, summary)
        summary.pending = state.count_pending(con)
        if count_in_extract_log:
            state.add_extract_warnings(con, summary.warnings)
    log.info("%s", summary.describe())
    return summary


def _evaluate(
    config: Config,
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    links: Links,
    report_url: str,
    summary: AlertRunSummary,
    dry_run: bool,
) -> None:
    by_name = {channel.name: channel for channel in config.channels}
    for rule in config.alerts:
        previous = state.read_rule_state(con, rule.name, rule.kind)
        since = previous.baseline_at if previous else now
        ctx = rules.Context(
            con,
            now,
            since,
            previous is None,
            previous.state if previous else {},
            links,
            report_url,
            config.zombie_after_hours,
        )
        try:
            found = rules.evaluate(rule, ctx)
        except RunreportError as exc:
            _warn(summary, exc.one_line())
            continue
        except duckdb.Error as exc:
            _warn(summary, f"alert rule {rule.name!r} failed: {str(exc).splitlines()[0]}")
            continue
        for alert in found.alerts:
            for name in rule.channels:
                channel = by_name[name]
                if not rules.covers(channel.experiments, alert.experiment_name):
                    continue
                if state.known(con, alert.key, name):
                    continue
                summary.new += 1
                if dry_run:
                    summary.previews.append(preview(channel, alert))
                else:
                    state.add_pending(con, alert, name)
        if not dry_run:
            state.write_rule_state(
                con, rule.name, rule.kind, state.RuleState(since, now, found.state)
            )


def _warn(summary: AlertRunSummary, line: str) -> None:
    summary.warnings += 1
    summary.problems.append(line)
    log.warning("%s", line)


def deliver_pending(
    config: Config, con: duckdb.DuckDBPyConnection, summary: AlertRunSummary
) -> None:
    by_name = {channel.name: channel for channel in config.channels}
    down: set[str] = set()  # a channel that failed in this run is tried again next run
    for delivery in state.pending(con):
        channel = by_name.get(delivery.channel)
        if channel is None:
            state.record_attempt(
                con,
                delivery,
                delivered_at=None,
                error="the channel is no longer configured",
                max_attempts=delivery.attempts + 1,
            )
            summary.failed += 1
            continue
        if channel.name in down:
            continue
        try:
            send(config, channel, delivery.alert)
        except DeliveryFailed as exc:
            down.add(channel.name)
            status = state.record_attempt(
                con,
                delivery,
                delivered_at=None,
                error=str(exc),
                max_attempts=config.alert_max_attempts,
            )
            what = "marked failed" if status == state.FAILED else "will be retried at the next run"
            if status == state.FAILED:
                summary.failed += 1
            _warn(
                summary,
                f"alert {delivery.alert.key!r} to channel {channel.name!r} not delivered "
                f"(attempt {delivery.attempts + 1} of {config.alert_max_attempts}): {exc}; {what}",
            )
            continue
        state.record_attempt(
            con,
            delivery,
            delivered_at=datetime.now(timezone.utc),
            error=None,
            max_attempts=config.alert_max_attempts,
        )
        summary.sent += 1
        log.info("alert sent to %s (%s): %s", channel.name, channel.kind, delivery.alert.summary)


def send(config: Config, channel: Channel, alert: Alert) -> None:
    """One alert to one channel, with the retries of its delivery; DeliveryFailed."""
    if channel.kind == "email":
        from etl.mail import MailSettings  # SMTP and the report's mail: for mail channels only

        try:
            settings = MailSettings.from_config(config)
        except RunreportError as exc:
            raise DeliveryFailed(exc.one_line()) from None
        send_mail(formats.email_message(*formats.email_parts(alert)), channel.to, settings)
        return
    assert channel.url_env is not None
    url = env_url(channel.url_env)
    secret = None
    if channel.secret_env:
        secret = os.environ.get(channel.secret_env) or None
        if secret is None:
            raise DeliveryFailed(f"{channel.secret_env} is not set (the channel's secret_env)")
    message = formats.for_channel(channel.kind, alert, secret)
    post(url, message.encoded(), message.headers, policy_of(config))


def preview(channel: Channel, alert: Alert) -> str:
    """What --dry-run prints for one delivery."""
    head = f"--- to {channel.name} ({channel.kind}): {alert.key}"
    if channel.kind == "email":
        subject, text, _ = formats.email_parts(alert)
        return f"{head}\nTo: {', '.join(channel.to)}\nSubject: {subject}\n\n{text}"
    message = formats.for_channel(channel.kind, alert, None)
    return f"{head}\n{json.dumps(message.body, indent=2, ensure_ascii=False)}"
