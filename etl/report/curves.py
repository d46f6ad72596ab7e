"""Learning curves: each experiment's primary metric against step for its leaderboard's top
runs, read from metric_history (filled by `--metric-history`), one chart per experiment
(etl/report/charts.py), with each run's metric_curves row beside it.

The top runs are ranked as the leaderboard ranks them (finite latest value of the primary
metric, best first, then the earliest start, then run id); runs without history of that
key are left out, each keeping its rank. A run's x is its metric_curves axis: the step, or
(axis 'order': its steps do not vary) the point's position in logged order, numbered as
the view numbers it. A run with fewer than MIN_POINTS finite points is listed, not drawn.

An extract that asks for history notes on the metric_history table (its DuckDB comment,
etl/extract/history.py HISTORY_NOTE) for how many runs it could not read it: that count is
`unread_runs`, and the report says so instead of asking for the setting.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from etl.report.charts import curve_chart, png_data_uri
from etl.report.model import TOP_RUNS, Curve, CurveGroup, LearningCurves
from etl.values import FLOAT_MAX

MAX_EXPERIMENTS = 12
MIN_POINTS = 3  # as metric_curves.still_improving: fewer points make no curve

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
select top.*, curves.points, curves.finite_points, curves.axis, curves.best_value,
    curves.best_step, curves.last_step, curves.last_value, curves.still_improving
from top
inner join metric_curves as curves on curves.run_id = top.run_id and curves.key = top.metric_key
order by top.experiment_name, top.experiment_id, top.rank
"""

# x as metric_curves numbers it: the step, or the position in logged order (by timestamp,
# then value) counting every point, NaN and ±inf included, which are then left out
POINTS_SQL = """
select x, value
from (
    select
        case when ? = 'order' then row_number() over (order by timestamp, value)
            else step end as x,
        timestamp,
        value
    from metric_history
    where run_id = ? and key = ?
)
where not isnan(value) and abs(value) < ?
order by x, timestamp
"""

HISTORY_NOTE = re.compile(r"could not be read for (\d+) runs")


def load_curves(con: duckdb.DuckDBPyConnection) -> LearningCurves:
    """The curves of each experiment's top runs; has_history False when metric_history is
    empty (or the warehouse predates the metric_curves view)."""
    present = {name for (name,) in con.execute("select view_name from duckdb_views()").fetchall()}
    if "metric_curves" not in present:
        return LearningCurves()
    unread = unread_runs(con)
    if con.execute("select count(*) from (select 1 from metric_history limit 1)").fetchone() == (
        0,
    ):
        return LearningCurves(unread_runs=unread)
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
        if row["finite_points"] >= MIN_POINTS:
            points = con.execute(
                POINTS_SQL, [row["axis"], curve.run_id, group.metric_key, FLOAT_MAX]
            ).fetchall()
            curve.steps = [x for x, _ in points]
            curve.values = [value for _, value in points]
        group.curves.append(curve)
    shown = list(groups.values())
    return LearningCurves(
        True, shown[:MAX_EXPERIMENTS], max(0, len(shown) - MAX_EXPERIMENTS), unread_runs=unread
    )


def unread_runs(con: duckdb.DuckDBPyConnection) -> int:
    """The runs whose metric history the last extract asked for and could not read, as
    it noted on the metric_history table (0 without a note)."""
    row = con.execute(
        "select comment from duckdb_tables() "
        "where table_name = 'metric_history' and schema_name = 'main' "
        "and database_name = current_database()"
    ).fetchone()
    note = HISTORY_NOTE.search(row[0] or "") if row else None
    return int(note[1]) if note else 0


def drawn_curves(curves: LearningCurves, work: Path) -> LearningCurves:
    """The curves with each group's chart drawn into `work` and embedded as a data URI (none
    when no run of the group has enough points to draw)."""
    for number, group in enumerate(curves.groups, start=1):
        chart = curve_chart(group, work / f"learning_curves_{number}.png")
        group.data_uri = png_data_uri(chart) if chart else ""
    return curves
