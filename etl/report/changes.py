"""What changed since the previous report, read from its report.json.

Each report.json keeps, under "state", what the next report compares with: the
leaderboard (best run per experiment), the ids of every failed or killed run, and the
ids of the zombie runs. A change is then:

- a new best: an experiment's best run differs from the previous one on the same metric
  and its value is strictly better (a different metric, e.g. after a config change, is no
  new best); an experiment that had no best before counts, with no previous value. It is
  `within_noise` when its gain is no more than the standard deviation of the previous
  best's group (its configuration over its seeds, see leaderboard_groups), and its
  `param_changes` are the params that differ from the previous best's (at most
  PARAM_CHANGES_SHOWN, by key);
- a best removed: the previous best run is no longer the best on the same metric and
  runs, and no better run took its place (it was deleted, or its value got worse), or no
  run ranks at all now;
- a new failure: a FAILED or KILLED run the previous report did not list, whenever it
  ended, so each failure is told once;
- a newly stuck run: a zombie run the previous report did not list;
- a parent newly left open: one of parents_left_open the previous report did not list
  (so each is listed once, then only counted);
- an alias move, of a registered model or a prompt: one alias_moves saw after the
  previous report (set, moved to another version, or removed);
- a pass-rate drop: an assessment's pass rate (valid feedback only) fell by at least
  PASS_RATE_DROP since the previous report.

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
    best_removed: list[Row] = field(default_factory=list)
    new_failures: list[Row] = field(default_factory=list)
    new_stuck: list[Row] = field(default_factory=list)
    new_open_parents: list[Row] = field(default_factory=list)
    alias_moves: list[Row] = field(default_factory=list)
    pass_rate_drops: list[Row] = field(default_factory=list)

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
        return (
            len(self.new_best)
            + len(self.best_removed)
            + len(self.new_failures)
            + len(self.new_stuck)
            + len(self.new_open_parents)
            + len(self.alias_moves)
            + len(self.pass_rate_drops)
        )

    def as_json(self) -> dict[str, Any] | None:
        if not self.compared:
            return None
        return {
            "new_best": [_public(row, BEST_FIELDS) for row in self.new_best],
            "best_removed": [_public(row, REMOVED_FIELDS) for row in self.best_removed],
            "new_failures": [_public(row, FAILURE_FIELDS) for row in self.new_failures],
            "new_stuck": [_public(row, STUCK_FIELDS) for row in self.new_stuck],
            "new_parents_left_open": [_public(row, STUCK_FIELDS) for row in self.new_open_parents],
            "alias_moves": [_public(row, ALIAS_FIELDS) for row in self.alias_moves],
            "pass_rate_drops": [_public(row, DROP_FIELDS) for row in self.pass_rate_drops],
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
    "within_noise",
    "param_changes",
)
REMOVED_FIELDS = (
    "experiment_id",
    "experiment_name",
    "run_id",
    "run_name",
    "metric",
    "value",
    "new_best_run_id",
    "new_best_run_name",
    "new_value",
)
PARAM_CHANGES_SHOWN = 10
FAILURE_FIELDS = ("run_id", "experiment_id", "status", "run_name", "experiment_name")
STUCK_FIELDS = ("run_id", "experiment_id", "run_name", "experiment_name")
ALIAS_FIELDS = ("kind", "name", "alias", "change", "previous_version", "version", "observed_at")
DROP_FIELDS = (
    "experiment_id",
    "experiment_name",
    "assessment_name",
    "pass_rate",
    "previous_pass_rate",
    "judged",
)
# an assessment's pass rate that fell by this much (5 points) since the previous report
PASS_RATE_DROP = 0.05


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


def leaderboard_state(board: list[Row], params: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The leaderboard as new_best and best_removed compare with it (a report's state, and
    an alert rule's): the best run per experiment, its value, spread and params."""
    return [
        {
            "tracking_source": row.get("tracking_source"),
            "experiment_id": row["experiment_id"],
            "experiment_name": row["experiment_name"],
            "metric": row["metric_key"],
            "run_id": row["run_id"],
            "run_name": row["run_name"],
            "value": to_json(row["value"]),
            "runs": row["leaderboard_runs"],
            "group_std": to_json(row["group_std"]),
            "params": params.get(row["run_id"], {}),
        }
        for row in board
    ]


def state_of(data: ReportData) -> dict[str, Any]:
    """What the next report compares with."""
    return {
        "leaderboard": leaderboard_state(data.views["leaderboard"].rows, data.best_params),
        "failed_run_ids": sorted(row["run_id"] for row in data.views["failed_runs"].rows),
        "stuck_run_ids": sorted(row["run_id"] for row in data.views["zombie_runs"].rows),
        "open_parent_run_ids": sorted(
            row["run_id"] for row in data.views["parents_left_open"].rows
        ),
        "pass_rates": [
            {
                "experiment_id": row["experiment_id"],
                "assessment_name": row["assessment_name"],
                "pass_rate": to_json(row["pass_rate"]),
            }
            for row in data.views["assessment_pass_rates"].rows
        ],
    }


def compare(previous: dict[str, Any] | None, data: ReportData, scoped: bool = False) -> Changes:
    """`scoped`: `data` holds some experiments only (a team's digest): the previous
    report's bests of the others are no change of this one."""
    state = previous.get("state") if previous else None
    if not isinstance(state, dict):
        return Changes(since=None)
    since = str(previous.get("generated_at")) if previous else None
    before, board = state.get("leaderboard") or [], data.views["leaderboard"].rows
    if scoped:
        shown = set(data.experiment_names)
        before = [old for old in before if old.get("experiment_name") in shown]
    seen_failed = set(state.get("failed_run_ids") or [])
    seen_stuck = set(state.get("stuck_run_ids") or [])
    open_parents = data.views["parents_left_open"].rows
    # a report from before open_parent_run_ids listed every open parent: none is new
    seen_open = set(state.get("open_parent_run_ids", [row["run_id"] for row in open_parents]))
    return Changes(
        since=since,
        new_best=new_best(before, board, data.best_params),
        best_removed=best_removed(before, board),
        new_failures=[
            row for row in data.views["failed_runs"].rows if row["run_id"] not in seen_failed
        ],
        new_stuck=[
            row for row in data.views["zombie_runs"].rows if row["run_id"] not in seen_stuck
        ],
        new_open_parents=[row for row in open_parents if row["run_id"] not in seen_open],
        alias_moves=alias_moves_since(since, data.views["alias_moves"].rows),
        pass_rate_drops=pass_rate_drops(state.get("pass_rates") or [], data),
    )


def alias_moves_since(since: str | None, moves: list[Row]) -> list[Row]:
    """The alias changes (of models and prompts) an extract saw after the previous report."""
    try:
        after = datetime.fromisoformat(since) if since else None
    except ValueError:
        return []
    return [
        row
        for row in moves
        if after is not None and row["change"] != "first_seen" and row["observed_at"] > after
    ]


def pass_rate_drops(before: list[dict[str, Any]], data: ReportData) -> list[Row]:
    previous = {
        (old.get("experiment_id"), old.get("assessment_name")): _number(old.get("pass_rate"))
        for old in before
    }
    drops = []
    for row in data.views["assessment_pass_rates"].rows:
        was = previous.get((row["experiment_id"], row["assessment_name"]))
        now = _number(row["pass_rate"])
        if was is not None and now is not None and was - now >= PASS_RATE_DROP - 1e-9:
            drops.append({**row, "previous_pass_rate": was})
    return drops


Experiment = tuple[Any, str]  # (tracking_source, experiment_id): ids repeat across sources


def _previous_bests(before: list[dict[str, Any]]) -> dict[Experiment, dict[str, Any]]:
    return {
        (row.get("tracking_source"), str(row.get("experiment_id"))): row
        for row in before
        if isinstance(row, dict)
    }


def _experiment(row: Row) -> Experiment:
    return (row.get("tracking_source"), row["experiment_id"])


def _same_ranking(old: dict[str, Any], row: Row) -> bool:
    """Ranked on the same metric over the same runs (a report from before the runs were
    saved is taken to have ranked the same runs)."""
    runs = old.get("runs", row["leaderboard_runs"])
    return bool(old.get("metric") == row["metric_key"] and runs == row["leaderboard_runs"])


def new_best(
    before: list[dict[str, Any]], board: list[Row], params: dict[str, dict[str, str]]
) -> list[Row]:
    previous = _previous_bests(before)
    found = []
    for row in board:
        old = previous.get(_experiment(row))
        if old is not None and (not _same_ranking(old, row) or not _better(row, old)):
            continue
        old_value = _number(old.get("value")) if old else None
        delta = row["value"] - old_value if old_value is not None else None
        noise = _number(old.get("group_std")) if old else None
        found.append(
            {
                **row,
                "metric": row["metric_key"],
                "previous_value": old_value,
                "previous_run_id": old.get("run_id") if old else None,
                "previous_run_name": old.get("run_name") if old else None,
                "previous_std": noise,
                "delta": delta,
                "within_noise": delta is not None and noise is not None and abs(delta) <= noise,
                "param_changes": param_changes(
                    old.get("params") if old else None, params.get(row["run_id"], {})
                ),
            }
        )
    return found


def param_changes(previous: object, now: dict[str, str]) -> list[dict[str, Any]] | None:
    """The params whose values differ between the previous best and the new one, by key
    (None where one is missing), at most PARAM_CHANGES_SHOWN; None when the previous
    best's params are not known."""
    if not isinstance(previous, dict):
        return None
    keys = sorted(key for key in {*previous, *now} if previous.get(key) != now.get(key))
    return [
        {"key": key, "previous": previous.get(key), "now": now.get(key)}
        for key in keys[:PARAM_CHANGES_SHOWN]
    ]


def best_removed(before: list[dict[str, Any]], board: list[Row]) -> list[Row]:
    """The previous bests that lost their place without a better run taking it: deleted
    or lowered (or no run ranks now). Only against a report that saved which runs it
    ranked, so a report from an older version never reads a change of ranking as one."""
    current = {_experiment(row): row for row in board}
    found = []
    for key, old in _previous_bests(before).items():
        if "runs" not in old:
            continue
        row = current.get(key)
        if row is not None and (not _same_ranking(old, row) or _better(row, old)):
            continue
        if row is not None and row["run_id"] == old.get("run_id") and not _worse(row, old):
            continue
        found.append(
            {
                "tracking_source": key[0],
                "experiment_id": key[1],
                "experiment_name": row["experiment_name"] if row else old.get("experiment_name"),
                "run_id": old.get("run_id"),
                "run_name": old.get("run_name"),
                "metric": old.get("metric"),
                "value": _number(old.get("value")),
                "new_best_run_id": row["run_id"] if row else None,
                "new_best_run_name": row["run_name"] if row else None,
                "new_value": row["value"] if row else None,
                "greater_is_better": row["greater_is_better"] if row else None,
            }
        )
    return found


def _better(row: Row, old: dict[str, Any]) -> bool:
    """Another run than the previous best, with a strictly better value."""
    if old.get("run_id") == row["run_id"]:
        return False
    old_value = _number(old.get("value"))
    if old_value is None:
        return True
    value = float(row["value"])
    return value > old_value if row["greater_is_better"] else value < old_value


def _worse(row: Row, old: dict[str, Any]) -> bool:
    old_value = _number(old.get("value"))
    if old_value is None:
        return False
    value = float(row["value"])
    return value < old_value if row["greater_is_better"] else value > old_value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
