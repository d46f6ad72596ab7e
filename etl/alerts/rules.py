"""Each alert kind's evaluation over the warehouse: the views of sql/ where one holds the
answer (ranked_runs, metric_key_directions, leaderboard, zombie_runs), the report's
change logic (etl.report.changes) for new_best and best_removed.

Every rule returns the alerts it finds and the state its next evaluation compares with.
The first evaluation of a rule on a warehouse is its baseline: nothing that happened
before it is alerted. An alert's key is stable (rule, experiment, run or window), so an
event found again at the next evaluation is never sent twice (etl/alerts/state.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import duckdb

from etl.alerts.model import Alert
from etl.alerts.state import fired_since
from etl.config import AlertRule
from etl.errors import RunreportError
from etl.report import changes
from etl.report.data import best_run_params
from etl.report.links import Links

Row = dict[str, Any]
# metric_regression with zscore: fewer earlier runs than this is no baseline to judge by
MIN_BASELINE_RUNS = 5


class RuleError(RunreportError):
    """This rule cannot be evaluated on this warehouse (the others still are)."""


@dataclass
class Context:
    con: duckdb.DuckDBPyConnection
    now: datetime
    since: datetime  # the rule's baseline: nothing before it is alerted
    first: bool  # this evaluation sets the baseline
    previous_state: dict[str, Any]
    links: Links
    report_url: str
    zombie_after_hours: float


@dataclass
class Found:
    alerts: list[Alert] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


def evaluate(rule: AlertRule, ctx: Context) -> Found:
    return EVALUATORS[rule.kind](rule, ctx)


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> list[Row]:
    cursor = con.execute(query, params or [])
    columns = [item[0] for item in cursor.description]
    return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]


def covers(patterns: tuple[str, ...], name: object) -> bool:
    """An experiment (by name) a rule's or channel's `experiments` globs cover."""
    return not patterns or any(fnmatchcase(str(name or ""), pattern) for pattern in patterns)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _alert(rule: AlertRule, ctx: Context, key_tail: str, summary: str, **fields: Any) -> Alert:
    for name in ("value", "baseline", "delta"):
        if name in fields:
            fields[name] = _number(fields[name])
    experiment, run = fields.get("experiment_id"), fields.get("run_id")
    url = ctx.links.run(run, experiment) if run else ctx.links.experiment(experiment)
    return Alert(
        key=f"{rule.name}|{experiment or ''}|{key_tail}",
        rule=rule.name,
        kind=rule.kind,
        fired_at=ctx.now,
        summary=summary,
        url=url,
        report_url=ctx.report_url,
        **fields,
    )


# --- runs ---------------------------------------------------------------------------------

RANKED_VALUES = """
select ranked_runs.experiment_id, ranked_runs.experiment_name, ranked_runs.run_id,
    ranked_runs.run_name, ranked_runs.metric_key, ranked_runs.greater_is_better,
    ranked_runs.value, runs.end_time
from ranked_runs
inner join runs on runs.run_id = ranked_runs.run_id
where runs.status = 'FINISHED' and runs.end_time is not null
"""
# an explicit metric: every finished active run that logged it (finite values only)
METRIC_VALUES = """
select active_runs.experiment_id, active_runs.experiment_name, active_runs.run_id,
    active_runs.run_name, metric_values.key as metric_key,
    metric_key_directions.greater_is_better, metric_values.value, active_runs.end_time
from metric_values
inner join active_runs on active_runs.run_id = metric_values.run_id
left join metric_key_directions on metric_key_directions.metric_key = metric_values.key
where metric_values.key = ? and metric_values.is_finite
    and active_runs.status = 'FINISHED' and active_runs.end_time is not null
"""


def metric_regression(rule: AlertRule, ctx: Context) -> Found:
    """A run that finished since the baseline, worse than the runs before it: than the
    previous best by `threshold` (absolute) or `relative` (a share of it), or by more than
    `zscore` standard deviations from the mean of the last `baseline_runs` finished runs.
    Each run is judged against the runs that finished before it, whenever it is seen."""
    metric = rule.option("metric")
    source = METRIC_VALUES if metric else RANKED_VALUES
    window = int(rule.option("baseline_runs"))
    scored = _rows(
        ctx.con,
        f"""
        with source as ({source}),
        judged as (
            select *,
                case when greater_is_better
                    then max(value) over earlier else min(value) over earlier end as best,
                avg(value) over last_runs as mean,
                stddev_samp(value) over last_runs as std,
                count(value) over last_runs as baseline_count
            from source
            window earlier as (partition by experiment_id order by end_time, run_id
                rows between unbounded preceding and 1 preceding),
                last_runs as (partition by experiment_id order by end_time, run_id
                rows between {window} preceding and 1 preceding)
        )
        select * from judged where end_time > ? and end_time <= ?
        order by end_time, run_id
        """,
        [*([metric] if metric else []), ctx.since, ctx.now],
    )
    found = Found()
    unknown_direction = set()
    for row in scored:
        if not covers(rule.experiments, row["experiment_name"]):
            continue
        if row["greater_is_better"] is None:
            unknown_direction.add(row["metric_key"])
            continue
        judged = _regression(rule, row)
        if judged is None:
            continue
        baseline, how = judged
        value = float(row["value"])
        found.alerts.append(
            _alert(
                rule,
                ctx,
                str(row["run_id"]),
                f"{row['metric_key']} of run {row['run_name']} in {row['experiment_name']} "
                f"is {_fmt(value)}, {how}",
                experiment_id=row["experiment_id"],
                experiment_name=row["experiment_name"],
                run_id=row["run_id"],
                run_name=row["run_name"],
                metric=row["metric_key"],
                value=value,
                baseline=baseline,
                delta=value - baseline,
                facts=(
                    ("Metric", str(row["metric_key"])),
                    ("Value", _fmt(value)),
                    ("Baseline", _fmt(baseline)),
                    ("Change", _fmt(value - baseline)),
                ),
            )
        )
    if unknown_direction:
        keys = ", ".join(sorted(unknown_direction))
        raise RuleError(
            f"alert rule {rule.name!r}: which direction is better for {keys} is unknown",
            f'Say it in the config: [metrics] {sorted(unknown_direction)[0]} = "higher" or "lower"',
        )
    return found


def _regression(rule: AlertRule, row: Row) -> tuple[float, str] | None:
    """(the baseline, how the run is worse than it) when the run is a regression."""
    sign = 1.0 if row["greater_is_better"] else -1.0
    value = float(row["value"])
    threshold, relative, zscore = (rule.option(k) for k in ("threshold", "relative", "zscore"))
    if zscore is not None:
        mean, std = _number(row["mean"]), _number(row["std"]) or 0.0
        if mean is None or row["baseline_count"] < min(
            MIN_BASELINE_RUNS, rule.option("baseline_runs")
        ):
            return None
        worse = (mean - value) * sign
        if worse <= 0 or (std > 0 and worse / std <= zscore):
            return None
        spread = f"{worse / std:.1f} standard deviations" if std > 0 else "any change"
        return mean, (
            f"worse than the mean of the last {row['baseline_count']} runs "
            f"({_fmt(mean)}) by {spread}"
        )
    best = _number(row["best"])
    if best is None:
        return None
    worse = (best - value) * sign
    limit = threshold if threshold is not None else relative * abs(best)
    if worse <= limit:
        return None
    return best, f"worse than the previous best ({_fmt(best)}) by {_fmt(worse)}"


def _board(ctx: Context, rule: AlertRule) -> list[Row]:
    rows = _rows(ctx.con, "select * from leaderboard")
    return [row for row in rows if covers(rule.experiments, row["experiment_name"])]


def _leaderboard_state(ctx: Context, board: list[Row]) -> dict[str, Any]:
    """What changes.new_best and changes.best_removed compare with (the report's state)."""
    return {"leaderboard": changes.leaderboard_state(board, best_run_params(ctx.con))}


def new_best(rule: AlertRule, ctx: Context) -> Found:
    """A new best on an experiment's leaderboard since the last evaluation (the report's
    changes.new_best), with the gain and the params that changed."""
    board = _board(ctx, rule)
    found = Found(state=_leaderboard_state(ctx, board))
    if ctx.first:
        return found
    before = ctx.previous_state.get("leaderboard") or []
    params = best_run_params(ctx.con)
    for row in changes.new_best(before, board, params):
        value, previous = _number(row["value"]), _number(row["previous_value"])
        changed = ", ".join(
            f"{c['key']}: {c['previous']} → {c['now']}" for c in row["param_changes"] or []
        )
        noise = " (within the noise of its seeds)" if row["within_noise"] else ""
        facts = [("Metric", str(row["metric"])), ("Value", _fmt(value))]
        if previous is not None:
            facts += [("Previous best", _fmt(previous)), ("Gain", _fmt(row["delta"]))]
        if changed:
            facts.append(("Params changed", changed))
        found.alerts.append(
            _alert(
                rule,
                ctx,
                str(row["run_id"]),
                f"new best in {row['experiment_name']}: run {row['run_name']}, "
                f"{row['metric']} {_fmt(value)}"
                + (f" (was {_fmt(previous)})" if previous is not None else "")
                + noise,
                experiment_id=row["experiment_id"],
                experiment_name=row["experiment_name"],
                run_id=row["run_id"],
                run_name=row["run_name"],
                metric=row["metric"],
                value=value,
                baseline=previous,
                delta=row["delta"],
                facts=tuple(facts),
            )
        )
    return found


def best_removed(rule: AlertRule, ctx: Context) -> Found:
    """The previous best run was deleted or its value got worse, and no better run took
    its place (the report's changes.best_removed)."""
    board = _board(ctx, rule)
    found = Found(state=_leaderboard_state(ctx, board))
    if ctx.first:
        return found
    before = [
        row
        for row in ctx.previous_state.get("leaderboard") or []
        if covers(rule.experiments, row.get("experiment_name"))
    ]
    for row in changes.best_removed(before, board):
        value, now = _number(row["value"]), _number(row["new_value"])
        after = (
            f"the best is now run {row['new_best_run_name']} ({_fmt(now)})"
            if row["new_best_run_id"]
            else "no run ranks now"
        )
        found.alerts.append(
            _alert(
                rule,
                ctx,
                str(row["run_id"]),
                f"best run {row['run_name']} of {row['experiment_name']} "
                f"({row['metric']} {_fmt(value)}) was deleted or lowered; {after}",
                experiment_id=row["experiment_id"],
                experiment_name=row["experiment_name"],
                run_id=row["run_id"],
                run_name=row["run_name"],
                metric=row["metric"],
                value=now,
                baseline=value,
                delta=(now - value) if now is not None and value is not None else None,
                facts=(
                    ("Metric", str(row["metric"])),
                    ("Was", _fmt(value)),
                    ("Best now", _fmt(now)),
                ),
            )
        )
    return found


def stuck_runs(rule: AlertRule, ctx: Context) -> Found:
    """A run RUNNING past report.zombie_after_hours (the zombie_runs view), each once:
    those that became stuck after the baseline."""
    hours = ctx.zombie_after_hours
    found = Found()
    for row in _rows(ctx.con, "select * from zombie_runs"):
        stuck_at = row["start_time"] + timedelta(hours=hours)
        if not ctx.since < stuck_at <= ctx.now or not covers(
            rule.experiments, row["experiment_name"]
        ):
            continue
        found.alerts.append(
            _alert(
                rule,
                ctx,
                str(row["run_id"]),
                f"run {row['run_name']} in {row['experiment_name']} is still RUNNING "
                f"{hours:g} hours after it started",
                experiment_id=row["experiment_id"],
                experiment_name=row["experiment_name"],
                run_id=row["run_id"],
                run_name=row["run_name"],
                facts=(
                    ("Started", row["start_time"].isoformat(timespec="minutes")),
                    ("User", str(row["user_id"] or "")),
                ),
            )
        )
    return found


# --- windows ------------------------------------------------------------------------------


def _window(rule: AlertRule, ctx: Context) -> tuple[datetime, datetime]:
    """The rule's window, never reaching before its baseline."""
    start = ctx.now - timedelta(hours=float(rule.option("window_hours")))
    return max(start, ctx.since), ctx.now


def _window_alerts(
    rule: AlertRule,
    ctx: Context,
    rows: list[Row],
    breached: Callable[[Row], str | None],
    name_column: str | None = None,
) -> Found:
    """One alert per experiment (and name) whose window breaches the rule, once per
    episode: not again while an alert of the same rule and experiment fired within the
    window."""
    found = Found()
    hours = float(rule.option("window_hours"))
    for row in rows:
        if not covers(rule.experiments, row["experiment_name"]):
            continue
        what = breached(row)
        if what is None:
            continue
        name = f"{row[name_column]}|" if name_column else ""
        prefix = f"{rule.name}|{row['experiment_id']}|{name}"
        if fired_since(ctx.con, prefix, ctx.now - timedelta(hours=hours)):
            continue
        tail = f"{name}{ctx.now.replace(minute=0, second=0, microsecond=0).isoformat()}"
        found.alerts.append(
            _alert(
                rule,
                ctx,
                tail,
                f"{what} in {row['experiment_name']} over the last {hours:g} hours",
                experiment_id=row["experiment_id"],
                experiment_name=row["experiment_name"],
                metric=row.get("metric"),
                value=row.get("value"),
                baseline=row.get("limit"),
                delta=(row["value"] - row["limit"])
                if row.get("value") is not None and row.get("limit") is not None
                else None,
                facts=tuple(row.get("facts") or ()),
            )
        )
    return found


def failure_rate(rule: AlertRule, ctx: Context) -> Found:
    """More than `max_failed` FAILED runs (or a share over `max_rate` of at least
    `min_runs` ended runs) in an experiment within the last `window_hours`."""
    start, end = _window(rule, ctx)
    rows = _rows(
        ctx.con,
        """
        select experiment_id, experiment_name,
            count(*) filter (where status = 'FAILED') as failed, count(*) as ended
        from active_runs
        where status in ('FINISHED', 'FAILED', 'KILLED') and end_time > ? and end_time <= ?
        group by all
        order by experiment_name, experiment_id
        """,
        [start, end],
    )
    max_failed, max_rate = rule.option("max_failed"), rule.option("max_rate")

    def breached(row: Row) -> str | None:
        failed, ended = int(row["failed"]), int(row["ended"])
        rate = failed / ended
        row["facts"] = (("Failed", str(failed)), ("Ended", str(ended)), ("Rate", f"{rate:.0%}"))
        if max_failed is not None and failed > max_failed:
            row.update(metric="failed_runs", value=failed, limit=max_failed)
            return f"{failed} failed runs (more than {max_failed})"
        if max_rate is not None and ended >= rule.option("min_runs") and rate > max_rate:
            row.update(metric="failure_rate", value=rate, limit=max_rate)
            return f"{failed} of {ended} runs failed ({rate:.0%}, more than {max_rate:.0%})"
        return None

    return _window_alerts(rule, ctx, rows, breached)


def _traces_in_window(rule: AlertRule, ctx: Context, select: str) -> list[Row]:
    start, end = _window(rule, ctx)
    return _rows(
        ctx.con,
        f"""
        select traces.experiment_id, experiments.name as experiment_name, {select}
        from traces
        left join experiments on experiments.experiment_id = traces.experiment_id
        where traces.request_time > ? and traces.request_time <= ?
        group by all
        order by experiment_name, traces.experiment_id
        """,
        [start, end],
    )


def trace_error_rate(rule: AlertRule, ctx: Context) -> Found:
    """A share of traces in ERROR over `max_rate`, among at least `min_traces`."""
    rows = _traces_in_window(
        rule,
        ctx,
        "count(*) as traces, count(*) filter (where traces.state = 'ERROR') as errors",
    )
    max_rate = rule.option("max_rate")

    def breached(row: Row) -> str | None:
        rate = row["errors"] / row["traces"]
        if row["traces"] < rule.option("min_traces") or rate <= max_rate:
            return None
        row.update(metric="trace_error_rate", value=rate, limit=max_rate)
        row["facts"] = (("Errors", str(row["errors"])), ("Traces", str(row["traces"])))
        return f"{rate:.0%} of {row['traces']} traces ended in ERROR (more than {max_rate:.0%})"

    return _window_alerts(rule, ctx, rows, breached)


def latency_p95_ms(rule: AlertRule, ctx: Context) -> Found:
    """The 95th percentile of trace latency over `max_ms`, among at least `min_traces`."""
    rows = _traces_in_window(
        rule,
        ctx,
        "count(*) as traces, quantile_cont(traces.execution_duration_ms, 0.95) as latency_p95_ms",
    )
    max_ms = rule.option("max_ms")

    def breached(row: Row) -> str | None:
        p95 = _number(row["latency_p95_ms"])
        if row["traces"] < rule.option("min_traces") or p95 is None or p95 <= max_ms:
            return None
        row.update(metric="latency_p95_ms", value=p95, limit=max_ms)
        row["facts"] = (("p95", f"{p95:.0f} ms"), ("Traces", str(row["traces"])))
        return f"trace latency p95 {p95:.0f} ms (over {max_ms:g} ms)"

    return _window_alerts(rule, ctx, rows, breached)


def _columns(ctx: Context, table: str) -> set[str]:
    rows = ctx.con.execute(
        "select column_name from duckdb_columns() where schema_name = 'main' "
        "and table_name = ? and database_name = current_database()",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


def assessment_pass_rate(rule: AlertRule, ctx: Context) -> Found:
    """Per experiment and assessment name, a pass rate under `min_rate` among at least
    `min_assessments` judged ones (pass/fail as the assessment_pass_rates view reads a
    value). Valid feedback only where the warehouse says which rows are (columns `valid`
    and `assessment_type`): an overridden feedback and an expectation do not count."""
    columns = _columns(ctx, "trace_assessments")
    valid = [
        "coalesce(trace_assessments.valid, true)" if "valid" in columns else "true",
        "lower(coalesce(trace_assessments.assessment_type, 'feedback')) = 'feedback'"
        if "assessment_type" in columns
        else "true",
    ]
    start, end = _window(rule, ctx)
    rows = _rows(
        ctx.con,
        f"""
        with judged as (
            select traces.experiment_id, trace_assessments.name as assessment_name,
                case
                    when lower(trim(trace_assessments.value, '" ')) in ('true', 'yes', 'pass')
                        then true
                    when lower(trim(trace_assessments.value, '" ')) in ('false', 'no', 'fail')
                        then false
                end as passed
            from trace_assessments
            inner join traces on traces.trace_id = trace_assessments.trace_id
            where traces.request_time > ? and traces.request_time <= ? and {" and ".join(valid)}
        )
        select judged.experiment_id, experiments.name as experiment_name, assessment_name,
            count(passed) as judged, count(*) filter (where passed) as passed
        from judged
        left join experiments on experiments.experiment_id = judged.experiment_id
        group by all
        order by experiment_name, judged.experiment_id, assessment_name
        """,
        [start, end],
    )
    names, min_rate = tuple(rule.option("assessments")), rule.option("min_rate")

    def breached(row: Row) -> str | None:
        judged = int(row["judged"])
        if judged < max(1, rule.option("min_assessments")):
            return None
        if names and not any(fnmatchcase(row["assessment_name"], n) for n in names):
            return None
        rate = row["passed"] / judged
        if rate >= min_rate:
            return None
        row.update(metric=row["assessment_name"], value=rate, limit=min_rate)
        row["facts"] = (
            ("Assessment", str(row["assessment_name"])),
            ("Passed", f"{row['passed']} of {judged}"),
        )
        return f"{row['assessment_name']} passed {rate:.0%} of {judged} (under {min_rate:.0%})"

    return _window_alerts(rule, ctx, rows, breached, name_column="assessment_name")


def daily_cost(rule: AlertRule, ctx: Context) -> Found:
    """The traces' total cost (USD, traces.total_cost) over `max_usd` in the window."""
    if "total_cost" not in _columns(ctx, "traces"):
        raise RuleError(
            f"alert rule {rule.name!r} (daily_cost): the warehouse's traces have no "
            "total_cost column",
            "Run a full extract with a runreport that reads trace cost (runreport extract "
            "--full), or remove the rule",
        )
    rows = _traces_in_window(rule, ctx, "sum(traces.total_cost) as cost, count(*) as traces")
    max_usd = rule.option("max_usd")

    def breached(row: Row) -> str | None:
        cost = _number(row["cost"])
        if cost is None or cost <= max_usd:
            return None
        row.update(metric="total_cost_usd", value=cost, limit=max_usd)
        row["facts"] = (("Cost", f"{cost:.2f} USD"), ("Traces", str(row["traces"])))
        return f"traces cost {cost:.2f} USD (over {max_usd:g} USD)"

    return _window_alerts(rule, ctx, rows, breached)


EVALUATORS: dict[str, Callable[[AlertRule, Context], Found]] = {
    "metric_regression": metric_regression,
    "new_best": new_best,
    "best_removed": best_removed,
    "failure_rate": failure_rate,
    "stuck_runs": stuck_runs,
    "trace_error_rate": trace_error_rate,
    "latency_p95_ms": latency_p95_ms,
    "assessment_pass_rate": assessment_pass_rate,
    "daily_cost": daily_cost,
}
