"""What the report shows, read from the warehouse views: the window, the headline figures
and one `Section` per table, each cut to a screenful with the rest left to its CSV file.

The window ("what happened"): with `since`, from midnight of that day in the report's
time zone; otherwise the `days` days before `now` (a rolling window, so a daily report
at 07:00 covers the 24 hours before it, not just the morning). Totals cover all history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

# Every view the report reads; each is also written whole to <view>.csv.
VIEWS_USED = (
    "runs_per_day",
    "runs_by_status",
    "runs_per_estimator",
    "runs_per_user",
    "leaderboard",
    "nested_searches",
    "failed_runs",
    "zombie_runs",
    "duplicate_run_names",
    "recent_runs",
    "metric_summary",
)
SCREENFUL = 25
STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")

Row = dict[str, Any]


@dataclass
class ViewRows:
    name: str
    columns: list[str]
    rows: list[Row]

    def tuples(self) -> list[tuple[Any, ...]]:
        return [tuple(row[column] for column in self.columns) for row in self.rows]


@dataclass
class Window:
    start: datetime  # UTC
    days: int
    first_day: date  # in the report's time zone
    report_day: date
    since: date | None


@dataclass
class Section:
    """One table of the report: the rows shown, and how many the full list holds."""

    view: str
    rows: list[Row]
    total: int  # rows in this section (in the window, where it applies)
    in_view: int  # rows in the whole view, i.e. in <view>.csv
    windowed: bool = False

    @property
    def csv(self) -> str:
        return f"{self.view}.csv"

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


@dataclass
class ReportData:
    timezone: str
    window: Window
    generated_at: datetime
    figures: dict[str, Any]
    views: dict[str, ViewRows]
    sections: dict[str, Section] = field(default_factory=dict)
    per_day: list[Row] = field(default_factory=list)  # every day of the window, oldest first


def read_settings_timezone(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("select timezone from runreport_settings limit 1").fetchone()
    return row[0] if row and row[0] else "UTC"


def read_view(con: duckdb.DuckDBPyConnection, name: str) -> ViewRows:
    cursor = con.execute(f"select * from {name}")
    columns = [item[0] for item in cursor.description]
    rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    return ViewRows(name, columns, rows)


def make_window(now: datetime, zone: str, since: date | None, days: int) -> Window:
    tz = ZoneInfo(zone)
    report_day = now.astimezone(tz).date()
    if since is not None:
        start = datetime.combine(since, time(0), tzinfo=tz).astimezone(timezone.utc)
        days = max((report_day - since).days + 1, 1)
    else:
        start = (now - timedelta(days=days)).astimezone(timezone.utc)
    return Window(start, days, start.astimezone(tz).date(), report_day, since)


def load_report_data(
    con: duckdb.DuckDBPyConnection, now: datetime, since: date | None, days: int
) -> ReportData:
    zone = read_settings_timezone(con)
    window = make_window(now, zone, since, days)
    views = {name: read_view(con, name) for name in VIEWS_USED}
    data = ReportData(zone, window, now, {}, views)
    data.figures = headline_figures(con, data)
    data.per_day = days_of_window(views["runs_per_day"].rows, window)
    data.sections = sections(views, window, data.per_day)
    return data


def in_window(rows: list[Row], window: Window, column: str = "start_time") -> list[Row]:
    return [row for row in rows if row[column] is not None and row[column] >= window.start]


def headline_figures(con: duckdb.DuckDBPyConnection, data: ReportData) -> dict[str, Any]:
    views, window = data.views, data.window
    experiments = con.execute(
        "select count(*) from experiments where lifecycle_stage = 'active'"
    ).fetchone()
    by_status = {row["status"]: row["runs"] for row in views["runs_by_status"].rows}
    failed = [r for r in in_window(views["failed_runs"].rows, window) if r["status"] == "FAILED"]
    return {
        "date": window.report_day.isoformat(),
        "generated_at": data.generated_at.isoformat(timespec="seconds"),
        "window_start": window.start.isoformat(timespec="seconds"),
        "window_days": window.days,
        "experiments": experiments[0] if experiments else 0,
        "runs": sum(by_status.values()),
        "new_runs": len(in_window(views["recent_runs"].rows, window)),
        "failed": len(failed),
        "running": by_status.get("RUNNING", 0),
        "zombies": len(views["zombie_runs"].rows),
    }


def days_of_window(per_day: list[Row], window: Window) -> list[Row]:
    """One row per day from the window's first day to the report day, zeros filled in."""
    counted = {row["start_date"]: row for row in per_day}
    rows = []
    day = window.first_day
    while day <= window.report_day:
        empty = {"start_date": day, "runs": 0, **{s.lower(): 0 for s in STATUSES}}
        rows.append(counted.get(day, empty))
        day += timedelta(days=1)
    return rows


def cut(view: str, rows: list[Row], in_view: int, windowed: bool = False) -> Section:
    return Section(view, rows[:SCREENFUL], len(rows), in_view, windowed)


def sections(views: dict[str, ViewRows], window: Window, per_day: list[Row]) -> dict[str, Section]:
    def whole(name: str) -> Section:
        rows = views[name].rows
        return cut(name, rows, len(rows))

    def windowed(name: str) -> Section:
        return cut(name, in_window(views[name].rows, window), len(views[name].rows), True)

    newest_first = list(reversed(per_day))
    return {
        "runs_per_day": cut("runs_per_day", newest_first, len(views["runs_per_day"].rows), True),
        "runs_by_status": whole("runs_by_status"),
        "runs_per_estimator": whole("runs_per_estimator"),
        "runs_per_user": whole("runs_per_user"),
        "leaderboard": whole("leaderboard"),
        "nested_searches": windowed("nested_searches"),
        "failed_runs": windowed("failed_runs"),
        "zombie_runs": whole("zombie_runs"),
        "duplicate_run_names": whole("duplicate_run_names"),
        "recent_runs": windowed("recent_runs"),
        "metric_summary": whole("metric_summary"),
    }
