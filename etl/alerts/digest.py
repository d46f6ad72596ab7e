"""The daily report in chat (`report.channels`): its headline and changes, the figures
read from the report folder's report.json (so chat and mail agree), with a link to the
full report. Sent once per channel and day through the alerts table, like an alert; and
[[mail.digests]]: which team gets which experiments' part of the report."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from etl.alerts import state
from etl.alerts.evaluate import deliver_pending, links_of, warehouse
from etl.alerts.model import Alert, AlertRunSummary
from etl.alerts.rules import covers
from etl.config import Config
from etl.errors import JobFailed

log = logging.getLogger("runreport")
DIGEST_KIND = "report_digest"
CHANGES_LISTED = 5  # per kind of change; the report has the rest


def read_report(report_folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((report_folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JobFailed(f"cannot read {report_folder / 'report.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise JobFailed(f"{report_folder / 'report.json'} holds no report")
    return data


def _listed(rows: list[dict[str, Any]], line: Any) -> str:
    shown = [line(row) for row in rows[:CHANGES_LISTED]]
    more = len(rows) - len(shown)
    return "\n".join(shown + ([f"and {more} more"] if more > 0 else []))


def digest_alert(report: dict[str, Any], report_url: str, name: str) -> Alert:
    """The report as one message: headline, figures, changes."""
    facts: list[tuple[str, str]] = [
        (label, str(report.get(key)))
        for label, key in (
            ("Runs", "runs"),
            ("New runs", "new_runs"),
            ("Failed", "failed"),
            ("Running", "running"),
            ("Zombies", "zombies"),
        )
        if report.get(key) is not None
    ]
    changes = report.get("changes") or {}

    def run_line(row: dict[str, Any]) -> str:
        return f"{row.get('experiment_name')}: {row.get('run_name') or row.get('run_id')}"

    def best_line(row: dict[str, Any]) -> str:
        return f"{run_line(row)} ({row.get('metric')} {row.get('value')})"

    for label, key, line in (
        ("New best", "new_best", best_line),
        ("Best removed", "best_removed", best_line),
        ("New failures", "new_failures", run_line),
        ("Newly stuck", "new_stuck", run_line),
    ):
        rows = [row for row in changes.get(key) or [] if isinstance(row, dict)]
        if rows:
            facts.append((f"{label} ({len(rows)})", _listed(rows, line)))
    generated = str(report.get("generated_at") or datetime.now(timezone.utc).isoformat())
    return Alert(
        key=f"report|{name}",
        rule="report.channels",
        kind=DIGEST_KIND,
        fired_at=datetime.fromisoformat(generated),
        summary=str(report.get("headline") or f"runreport {report.get('date', '')}".strip()),
        url="",
        report_url=report_url,
        facts=tuple(facts),
    )


def post_report_digest(
    config: Config, report_folder: Path, *, hold_lock: bool = True
) -> AlertRunSummary:
    """Post the report in `report_folder` to every channel of report.channels, once per
    channel (a failed post is retried at the next run). Never raises for a channel that
    is down: a warning, counted."""
    summary = AlertRunSummary()
    if not config.report_channels:
        return summary
    report = read_report(report_folder)
    url = ""
    if config.public_url:
        url = f"{config.public_url.rstrip('/')}/{report_folder.name}/index.html"
    alert = digest_alert(report, url, report_folder.name)
    with warehouse(config, write=True, hold_lock=hold_lock) as con:
        links_of(config, con)  # checks the UI URL as alerts do
        for name in config.report_channels:
            if not state.known(con, alert.key, name):
                state.add_pending(con, alert, name)
                summary.new += 1
        deliver_pending(config, con, summary)
        summary.pending = state.count_pending(con)
    return summary


@dataclass(frozen=True)
class DigestRoute:
    """One team's mail: its recipients and the experiments of the report it gets."""

    to: tuple[str, ...]
    experiments: list[str]  # names of the report's experiments its globs cover
    workspaces: tuple[str, ...] = ()  # the MLflow workspaces it is cut to; (): every one


def mail_digest_routes(config: Config, experiments: Sequence[tuple[str, str]]) -> list[DigestRoute]:
    """[[mail.digests]]: for each team, the experiments (of these (workspace, name) pairs)
    whose sections it gets; a team none of whose globs and workspaces covers one gets no
    mail."""
    routes = []
    for digest in config.mail_digests:
        covered = sorted(
            {
                name
                for workspace, name in experiments
                if covers(digest.experiments, name)
                and (not digest.workspaces or workspace in digest.workspaces)
            }
        )
        if covered:
            routes.append(DigestRoute(digest.to, covered, digest.workspaces))
    return routes
