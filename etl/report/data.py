"""What the report shows, read from the warehouse views: the window, the headline figures
and one `Section` per table, each cut to a screenful with the rest left to its CSV file.

Most views are small (a row per experiment, user, status or day) and are read whole.
The views that grow with the runs (`SHOWN_ONLY`: every active run, every duplicate
name, ...) are read a screenful at a time: the rows a section shows and two counts, so
the report's memory does not grow with the warehouse; their CSV files are streamed from
DuckDB (etl/report/render.py).

The window ("what happened"): with `since`, from midnight of that day in the report's
time zone; otherwise the `days` days before `now` (a rolling window, so a daily report
at 07:00 covers the 24 hours before it, not just the morning). Totals cover all history.

Long windows read by a coarser period: up to `DAILY_UP_TO` days by day, up to
`WEEKLY_UP_TO` days by week (weeks start on Monday), beyond that by calendar month. The
period table lists every day while the days fit a screenful, otherwise (and for weeks
and months) only the periods with runs; newest first either way.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from etl.report.curves import load_curves
from etl.report.entities import load_entities
from etl.report.model import (
    SCREENFUL,
    STATUSES,
    VIEWS_USED,
    Clock,
    Freshness,
    ReportData,
    Row,
    Section,
    ViewRows,
    Window,
)
from etl.schema import META_TABLE, SOURCE_COLUMN
from etl.warehouse.extract_log import NOTICE_KEY, failure_log
from etl.warehouse.sources import source_warehouse

DUPLICATES_SHOWN = 20
# view -> the time column its section is windowed on (None: not windowed); see the
# module docstring
SHOWN_ONLY: dict[str, str | None] = {
    "recent_runs": "start_time",
    "nested_searches": "start_time",
    "duplicate_run_names": "last_start",
    "metric_summary": None,
    "unranked_experiments": None,
    "leaderboard_groups": None,  # only its CSV file
}
DAILY_UP_TO = 62
WEEKLY_UP_TO = 182
TREND_WINDOWS = 4  # earlier windows of the same length each experiment is compared with


def read_settings_timezone(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("select timezone from runreport_settings limit 1").fetchone()
    return row[0] if row and row[0] else "UTC"


def read_view(con: duckdb.DuckDBPyConnection, name: str) -> ViewRows:
    cursor = con.execute(f"select * from {name}")
    columns = [item[0] for item in cursor.description]
    rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    return ViewRows(name, columns, rows)


def read_shown(
    con: duckdb.DuckDBPyConnection,
    name: str,
    window: Window,
    column: str | None,
    shown: int = SCREENFUL,
) -> Section:
    """The first `shown` rows of a view (of those in the window, with `column`), in the
    view's order, and how many it holds, in the window and in all."""
    where = f"where {column} >= $start" if column else ""
    in_window = f"count(*) filter ({where})" if column else "count(*)"
    parameters = {"start": window.start} if column else {}
    total, in_view = con.execute(
        f"select {in_window}, count(*) from {name}", parameters
    ).fetchone() or (0, 0)
    cursor = con.execute(f"select * from {name} {where} limit {int(shown)}", parameters)
    columns = [item[0] for item in cursor.description]
    rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    return Section(name, rows, total, in_view, column is not None)


def make_window(now: datetime, zone: str, since: date | None, days: int) -> Window:
    tz = ZoneInfo(zone)
    report_day = Clock(zone, now).today
    if since is not None:
        start = datetime.combine(since, time(0), tzinfo=tz).astimezone(timezone.utc)
        days = max((report_day - since).days + 1, 1)
    else:
        start = (now - timedelta(days=days)).astimezone(timezone.utc)
    return Window(start, days, start.astimezone(tz).date(), report_day, since)


def read_clock(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> Clock:
    """The report's clock: `now` (default: the current time) in the warehouse's time zone."""
    return Clock(read_settings_timezone(con), now)


def load_report_data(
    con: duckdb.DuckDBPyConnection, clock: Clock, since: date | None, days: int
) -> ReportData:
    window = make_window(clock.now, clock.timezone, since, days)
    views = {name: read_view(con, name) for name in VIEWS_USED if name not in SHOWN_ONLY}
    data = ReportData(clock, window, {}, views)
    data.period = period_of(window)
    data.per_day = periods_of_window(views["runs_per_day"].rows, window, data.period)
    data.sections = sections(con, views, window, data.per_day)
    data.figures = headline_figures(con, data)
    data.trends = experiment_trends(con, window, clock.now)
    data.tracking_uri = last_tracking_uri(con)
    data.sources = source_count(con)
    data.workspaces = [
        workspace
        for (workspace,) in con.execute(
            "select distinct workspace from experiments order by workspace"
        ).fetchall()
    ]
    data.curves = load_curves(con)
    data.entities = load_entities(views, window)
    data.figures.update(data.entities.figures())
    data.best_params = best_run_params(con)
    data.experiment_names = [
        name for (name,) in con.execute("select name from experiments").fetchall()
    ]
    parents = [row["parent_run_id"] for row in data.sections["nested_searches"].rows]
    data.children = child_run_ids(con, parents)
    data.dataset_sources = {
        (name, digest): source
        for name, digest, source in con.execute(
            "select name, digest, source from datasets"
        ).fetchall()
    }
    return data


def best_run_params(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """The params of each leaderboard's best run (what report.json's state keeps, for the
    next report's param_changes)."""
    found: dict[str, dict[str, str]] = {}
    for run_id, key, value in con.execute(
        "select run_id, key, value from params "
        "where run_id in (select run_id from leaderboard) order by run_id, key"
    ).fetchall():
        found.setdefault(run_id, {})[key] = value
    return found


def child_run_ids(con: duckdb.DuckDBPyConnection, parents: list[str]) -> dict[str, list[str]]:
    """The active child runs of each of these parent runs, oldest first."""
    if not parents:
        return {}
    rows = con.execute(
        "select parent_run_id, list(run_id order by start_time, run_id) from active_runs "
        "where parent_run_id in (select unnest($parents)) group by parent_run_id",
        {"parents": parents},
    ).fetchall()
    return {parent: list(children) for parent, children in rows}


def read_freshness(con: duckdb.DuckDBPyConnection, db: Path) -> Freshness:
    """When the data was extracted: the end of the last successful extract (with several
    sources, of the source extracted longest ago) and its mode; and the newest extract that
    failed after it, from extract_log or from the failure logs waiting beside the warehouse
    (and beside each source's) for the next success."""
    source = SOURCE_COLUMN if SOURCE_COLUMN in view_columns(con, "extract_log") else "null"
    per_source = con.execute(
        f"""
        select
            max(ended_at) filter (where status = 'ok') as last_ok,
            arg_max(mode, ended_at) filter (where status = 'ok') as mode,
            max(ended_at) filter (where status <> 'ok') as last_failed,
            arg_max(error, ended_at) filter (where status <> 'ok') as error
        from extract_log
        group by {source}
        order by last_ok nulls first
        """
    ).fetchall()
    if not per_source:
        return Freshness()
    last_ok, mode = per_source[0][0], per_source[0][1]
    failures = [
        (failed, error)
        for ok, _, failed, error in per_source
        if failed is not None and (ok is None or failed > ok)
    ]
    failures.extend(pending_failures(db))
    failed_at, error = max(failures, key=lambda item: item[0], default=(None, None))
    return Freshness(last_ok, mode, failed_at, error, extract_notices(con))


def extract_notices(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The warning lines of the extract that wrote the warehouse (runreport_meta)."""
    rows = con.execute(
        f"select value from {META_TABLE} where key = ? order by all", [NOTICE_KEY]
    ).fetchall()
    return [line for (line,) in rows]


def pending_failures(db: Path) -> list[tuple[datetime, str | None]]:
    """(when, error) of each failed extract waiting in a failure log, the warehouse's or a
    source's (etl/warehouse/extract_log.py): they failed after the last success."""
    sources = source_warehouse(db, "any").parent  # where [[sources]] keep their warehouses
    logs = [failure_log(db), *(failure_log(path) for path in sources.glob("*.duckdb"))]
    found = []
    for log in logs:
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                failed = json.loads(line)
                found.append((datetime.fromisoformat(failed["ended_at"]), failed.get("error")))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash says nothing
    return found


def last_tracking_uri(con: duckdb.DuckDBPyConnection) -> str | None:
    """The tracking URI of the newest extract (stored with credentials removed)."""
    row = con.execute(
        "select tracking_uri from extract_log order by started_at desc nulls last limit 1"
    ).fetchone()
    return row[0] if row else None


def headline_figures(con: duckdb.DuckDBPyConnection, data: ReportData) -> dict[str, Any]:
    views, window = data.views, data.window
    experiments = con.execute(
        "select count(*) from experiments where lifecycle_stage = 'active'"
    ).fetchone()
    by_status: dict[str, int] = {}
    for row in views["runs_by_status"].rows:  # a row per source in a warehouse of several
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["runs"]
    failed = [r for r in window.rows_in(views["failed_runs"].rows) if r["status"] == "FAILED"]
    return {
        "date": window.report_day.isoformat(),
        # to the millisecond, as MLflow times runs: a run started in the second a report was
        # generated, after it, is new for the next report and not for this one
        "generated_at": data.generated_at.isoformat(timespec="milliseconds"),
        "window_start": window.start.isoformat(timespec="seconds"),
        "window_days": window.days,
        "experiments": experiments[0] if experiments else 0,
        "runs": sum(by_status.values()),
        "new_runs": data.sections["recent_runs"].total,
        "failed": len(failed),
        "running": by_status.get("RUNNING", 0),
        "zombies": len(views["zombie_runs"].rows),
        "parents_left_open": len(views["parents_left_open"].rows),
    }


def period_of(window: Window) -> str:
    if window.days <= DAILY_UP_TO:
        return "day"
    return "week" if window.days <= WEEKLY_UP_TO else "month"


def period_start(day: date, period: str) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_period(start: date, period: str) -> date:
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def periods_of_window(per_day: list[Row], window: Window, period: str = "day") -> list[Row]:
    """One row per period from the window's first day to the report day, zeros filled in;
    `start_date` is the period's first day."""
    counts = ("runs", *(s.lower() for s in STATUSES))
    totals: dict[date, Row] = {}
    start = period_start(window.first_day, period)
    while start <= window.report_day:
        totals[start] = {"start_date": start, "period": period, **{c: 0 for c in counts}}
        start = next_period(start, period)
    for row in per_day:
        day = row["start_date"]
        if window.first_day <= day <= window.report_day:
            total = totals[period_start(day, period)]
            for name in counts:
                total[name] += row[name] or 0
    return list(totals.values())


def experiment_trends(con: duckdb.DuckDBPyConnection, window: Window, now: datetime) -> list[Row]:
    """Per experiment with runs in the window or the `TREND_WINDOWS` before it (each as
    long as the window): runs and failed runs in each, this window first. Most runs in
    this window first."""
    length_ms = max(int((now - window.start).total_seconds() * 1000), 1)
    earliest = window.start - timedelta(milliseconds=length_ms * TREND_WINDOWS)
    # an experiment is (source, id) in a warehouse of several sources
    source = "tracking_source" if SOURCE_COLUMN in view_columns(con, "active_runs") else "null"
    rows = con.execute(
        f"""
        select
            {source} as tracking_source,
            experiment_id,
            any_value(experiment_name) as experiment_name,
            case
                when start_time >= $start then 0
                else cast(ceil(date_diff('millisecond', start_time, $start) / $length) as int)
            end as back,
            count(*) as runs,
            count(*) filter (where status = 'FAILED') as failed
        from active_runs
        where start_time >= $earliest and start_time <= $now
        group by all
        """,
        {"start": window.start, "length": length_ms, "earliest": earliest, "now": now},
    ).fetchall()
    trends: dict[tuple[str | None, str], Row] = {}
    for tracking_source, experiment_id, name, back, runs, failed in rows:
        trend = trends.setdefault(
            (tracking_source, experiment_id),
            {
                "tracking_source": tracking_source,
                "experiment_id": experiment_id,
                "experiment_name": name,
                "runs": [0] * (TREND_WINDOWS + 1),
                "failed": [0] * (TREND_WINDOWS + 1),
            },
        )
        trend["runs"][back] += runs
        trend["failed"][back] += failed
    for trend in trends.values():
        trend["failure_rate"] = [
            failed / runs if runs else None
            for runs, failed in zip(trend["runs"], trend["failed"], strict=True)
        ]
    return sorted(
        trends.values(), key=lambda t: (-t["runs"][0], -sum(t["runs"]), t["experiment_name"])
    )


def view_columns(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"describe {view}").fetchall()]


def source_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many tracking stores the warehouse combines (1 for one without [[sources]])."""
    if SOURCE_COLUMN not in view_columns(con, "runs"):
        return 1
    row = con.execute(f"select count(distinct {SOURCE_COLUMN}) from runs").fetchone()
    return max(1, int(row[0]) if row else 1)


def sections(
    con: duckdb.DuckDBPyConnection, views: dict[str, ViewRows], window: Window, per_day: list[Row]
) -> dict[str, Section]:
    def whole(name: str) -> Section:
        if name in SHOWN_ONLY:
            return read_shown(con, name, window, None)
        rows = views[name].rows
        return Section.screenful(name, rows, len(rows))

    def windowed(name: str, column: str = "start_time", shown: int = SCREENFUL) -> Section:
        if name in SHOWN_ONLY:
            return read_shown(con, name, window, column, shown)
        rows = window.rows_in(views[name].rows, column)
        return Section(name, rows[:shown], len(rows), len(views[name].rows), True)

    newest_first = list(reversed(per_day))
    if len(newest_first) > SCREENFUL or (per_day and per_day[0]["period"] != "day"):
        newest_first = [row for row in newest_first if row["runs"]]
    return {
        "runs_per_day": Section.screenful(
            "runs_per_day", newest_first, len(views["runs_per_day"].rows), True
        ),
        "parents_left_open": whole("parents_left_open"),
        "unranked_experiments": whole("unranked_experiments"),
        "runs_by_status": whole("runs_by_status"),
        "runs_per_estimator": whole("runs_per_estimator"),
        "runs_per_user": whole("runs_per_user"),
        "leaderboard": whole("leaderboard"),
        "nested_searches": windowed("nested_searches"),
        "failed_runs": windowed("failed_runs"),
        "zombie_runs": whole("zombie_runs"),
        # names whose latest run started in the window: the ones still being made
        "duplicate_run_names": windowed("duplicate_run_names", "last_start", DUPLICATES_SHOWN),
        "recent_runs": windowed("recent_runs"),
        "metric_summary": whole("metric_summary"),
    }
