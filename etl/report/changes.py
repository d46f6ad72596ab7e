"""What changed since the previous report, read from its report.json.

Each report.json keeps, under "state", what the next report compares with: the
leaderboard (best run per experiment), the ids of every failed or killed run, and the
ids of the zombie runs. A change is then:

- a new best: an experiment's best run differs from the previous one on the same metric
  and its value is strictly better (a different metric, e.g. after a config change, is no
  new best); an experiment that had no best before counts, with no previous value;
- a new failure: a FAILED or KILLED run the previous report did not list, whenever it
  ended, so each failure is told once;
- a newly stuck run: a zombie run the previous report did not list.

The first report (no report.json, or one written before "state" existed) compares with
nothing: `changes` and `since` are null.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from etl.report.model import REPORT_JSON, ReportData, Row
from etl.values import to_json

log = logging.getLogger("runreport")


@dataclass
class Changes:
    since: str | None  # generated_at of the previous report
    new_best: list[Row] = field(default_factory=list)
    new_failures: list[Row] = field(default_factory=list)
    new_stuck: list[Row] = field(default_factory=list)

    @property
    def since_time(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.since) if self.since else None
        except ValueError:
            return None

    @property
    def compared(self) -> bool:
        return self.since is not None

    @property
    def count(self) -> int:
        return len(self.new_best) + len(self.new_failures) + len(self.new_stuck)

    def as_json(self) -> dict[str, Any] | None:
        if not self.compared:
            return None
        return {
            "new_best": [_public(row, BEST_FIELDS) for row in self.new_best],
            "new_failures": [_public(row, FAILURE_FIELDS) for row in self.new_failures],
            "new_stuck": [_public(row, STUCK_FIELDS) for row in self.new_stuck],
        }


BEST_FIELDS = (
    "experiment_id",
    "experiment_name",
    "run_id",
    "run_name",
    "metric",
    "value",
    "previous_value",
    "previous_run_id",
    "delta",
    "tied_runs",
)
FAILURE_FIELDS = ("run_id", "experiment_id", "status", "run_name", "experiment_name")
STUCK_FIELDS = ("run_id", "experiment_id", "run_name", "experiment_name")


def _public(row: Row, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: to_json(row.get(name)) for name in fields}


def previous_report(path: Path | None) -> dict[str, Any] | None:
    """The previous report.json (`path` is it or its folder); None when there is none or
    it cannot be read (then the report says it compares with nothing)."""
    if path is None:
        return None
    source = path / REPORT_JSON if path.is_dir() else path
    try:
        saved = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("previous report %s cannot be read (%s): comparing with nothing", source, exc)
        return None
    return saved if isinstance(saved, dict) else None


def state_of(data: ReportData) -> dict[str, Any]:
    """What the next report compares with."""
    return {
        "leaderboard": [
            {
                "tracking_source": row.get("tracking_source"),
                "experiment_id": row["experiment_id"],
                "metric": row["metric_key"],
                "run_id": row["run_id"],
                "run_name": row["run_name"],
                "value": to_json(row["value"]),
            }
            for row in data.views["leaderboard"].rows
        ],
        "failed_run_ids": sorted(row["run_id"] for row in data.views["failed_runs"].rows),
        "stuck_run_ids": sorted(row["run_id"] for row in data.views["zombie_runs"].rows),
    }


def compare(previous: dict[str, Any] | None, data: ReportData) -> Changes:
    state = previous.get("state") if previous else None
    if not isinstance(state, dict):
        return Changes(since=None)
    since = str(previous.get("generated_at")) if previous else None
    seen_failed = set(state.get("failed_run_ids") or [])
    seen_stuck = set(state.get("stuck_run_ids") or [])
    return Changes(
        since=since,
        new_best=new_best(state.get("leaderboard") or [], data.views["leaderboard"].rows),
        new_failures=[
            row for row in data.views["failed_runs"].rows if row["run_id"] not in seen_failed
        ],
        new_stuck=[
            row for row in data.views["zombie_runs"].rows if row["run_id"] not in seen_stuck
        ],
    )


def new_best(before: list[dict[str, Any]], board: list[Row]) -> list[Row]:
    # an experiment is (source, id): in a warehouse of several sources ids repeat
    previous = {
        (row.get("tracking_source"), str(row.get("experiment_id"))): row
        for row in before
        if isinstance(row, dict)
    }
    found = []
    for row in board:
        old = previous.get((row.get("tracking_source"), row["experiment_id"]))
        if old is not None and (old.get("metric") != row["metric_key"] or not _better(row, old)):
            continue
        old_value = _number(old.get("value")) if old else None
        found.append(
            {
                **row,
                "metric": row["metric_key"],
                "previous_value": old_value,
                "previous_run_id": old.get("run_id") if old else None,
                "previous_run_name": old.get("run_name") if old else None,
                "delta": row["value"] - old_value if old_value is not None else None,
            }
        )
    return found


def _better(row: Row, old: dict[str, Any]) -> bool:
    if old.get("run_id") == row["run_id"]:
        return False
    old_value = _number(old.get("value"))
    if old_value is None:
        return True
    value = float(row["value"])
    return value > old_value if row["greater_is_better"] else value < old_value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
