"""Learning curves: each experiment's primary metric against step for its leaderboard's top
runs, read from metric_history (filled by `--metric-history`), one chart per experiment
(etl/report/charts.py), with each run's metric_curves row beside it.

The top runs are ranked as the leaderboard ranks them (finite latest value of the primary
metric, best first, then the earliest start, then run id); runs without history of that
key are left out, each keeping its rank.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from etl.report.charts import curve_chart, png_data_uri
from etl.report.model import TOP_RUNS, Curve, CurveGroup, LearningCurves
from etl.values import FLOAT_MAX

MAX_EXPERIMENTS = 12

TOP_RUNS_SQL = """
with ranked as (
    select
        primary_metric.experiment_id,
        primary_metric.experiment_name,
        primary_metric.metric_key,
        primary_metric.greater_is_better,
        active_runs.run_id,
        active_runs.run_name,
        row_number() over (
            partition by primary_metric.experiment_id
            order by
                case when primary_metric.greater_is_better
                    then -metric_values.value else metric_values.value end,
                active_runs.start_time,
                active_runs.run_id
        ) as rank
    from experiment_primary_metric as primary_metric
    inner join active_runs on active_runs.experiment_id = primary_metric.experiment_id
    inner join metric_values
        on metric_values.run_id = active_runs.run_id
        and metric_values.key = primary_metric.metric_key
    where primary_metric.greater_is_better is not null and metric_values.is_finite
),
top as (
    select * from ranked
    where rank <= ?
        and exists (
            select 1 from metric_history
            where metric_history.run_id = ranked.run_id
                and metric_history.key = ranked.metric_key
        )
)
select top.*, curves.points, curves.best_value, curves.best_step, curves.last_step,
    curves.last_value, curves.still_improving
from top
inner join metric_curves as curves on curves.run_id = top.run_id and curves.key = top.metric_key
order by top.experiment_name, top.experiment_id, top.rank
"""

POINTS_SQL = """
select step, value
from metric_history
where run_id = ? and key = ?
    and not isnan(value) and abs(value) < ?
order by step, timestamp
"""


def load_curves(con: duckdb.DuckDBPyConnection) -> LearningCurves:
    """The curves of each experiment's top runs; has_history False when metric_history is
    empty (or the warehouse predates the metric_curves view)."""
    present = {name for (name,) in con.execute("select view_name from duckdb_views()").fetchall()}
    if "metric_curves" not in present:
        return LearningCurves()
    if con.execute("select count(*) from (select 1 from metric_history limit 1)").fetchone() == (
        0,
    ):
        return LearningCurves()
    groups: dict[str, CurveGroup] = {}
    cursor = con.execute(TOP_RUNS_SQL, [TOP_RUNS])
    columns = [item[0] for item in cursor.description]
    for values in cursor.fetchall():
        row = dict(zip(columns, values, strict=True))
        group = groups.setdefault(
            row["experiment_id"],
            CurveGroup(
                row["experiment_id"],
                row["experiment_name"],
                row["metric_key"],
                row["greater_is_better"],
            ),
        )
        curve = Curve(row["rank"], row["run_id"], row["run_name"], row)
        points = con.execute(POINTS_SQL, [curve.run_id, group.metric_key, FLOAT_MAX]).fetchall()
        curve.steps = [step for step, _ in points]
        curve.values = [value for _, value in points]
        group.curves.append(curve)
    shown = list(groups.values())
    return LearningCurves(True, shown[:MAX_EXPERIMENTS], max(0, len(shown) - MAX_EXPERIMENTS))


def drawn_curves(curves: LearningCurves, work: Path) -> LearningCurves:
    """The curves with each group's chart drawn into `work` and embedded as a data URI."""
    for number, group in enumerate(curves.groups, start=1):
        group.data_uri = png_data_uri(curve_chart(group, work / f"learning_curves_{number}.png"))
    return curves
