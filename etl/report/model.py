"""The report's shared types and facts: the files of a report folder, the views it reads,
the report's clock and window, and what it shows (sections, learning curves, the Models,
Datasets and GenAI entities).

Every other module of etl.report builds on this one, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Protocol
from zoneinfo import ZoneInfo

# The files of a report folder besides the CSV files (`csv_file`) and the chart PNGs.
INDEX_HTML = "index.html"  # the full, self-contained report
EMAIL_HTML = "email.html"  # CSS inlined, charts as cid: images
SUMMARY_TXT = "summary.txt"  # the email's text part
REPORT_JSON = "report.json"  # the headline figures and what the next report compares with
# The figures of report.json every report has, by name: what `mail.subject` may name
# ("{headline} ({date})"). tests/test_mail.py holds report.json to it.
SUBJECT_FIELDS = (
    "date", "generated_at", "window_start", "window_days", "experiments", "runs", "new_runs",
    "failed", "running", "zombies", "parents_left_open", "data_as_of", "extract_mode",
    "new_runs_since_previous", "headline", "since",
)  # fmt: skip

# Every view the report reads; each is also written whole to its CSV file.
VIEWS_USED = (
    "runs_per_day",
    "parents_left_open",
    "unranked_experiments",
    "runs_by_status",
    "runs_per_estimator",
    "runs_per_user",
    "leaderboard",
    "leaderboard_groups",  # written as its CSV: the leaderboard's runs by configuration
    "nested_searches",
    "failed_runs",
    "zombie_runs",
    "duplicate_run_names",
    "recent_runs",
    "metric_summary",
    # the Models, Datasets and GenAI sections (etl/report/entities.py)
    "model_versions_registered",
    "alias_moves",
    "best_logged_model",
    "runs_per_dataset",
    "traces_per_day",
    "assessment_pass_rates",
    "genai_cost_per_day",
    "genai_usage_per_user",
    "traces_by_name",
    "issues",  # a table: MLflow's detected issues
    "prompt_versions",  # a table: each prompt version with its template
)
STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
SCREENFUL = 25  # rows a section shows; its CSV file holds them all
TOP_RUNS = 5  # runs per learning-curve chart

Row = dict[str, Any]


def utc_text(moment: datetime) -> str:
    """A moment as ISO 8601 in UTC, to the second: 2026-01-13T06:02:11+00:00."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def csv_file(view: str) -> str:
    """The name of the CSV file holding the whole view."""
    return f"{view}.csv"


class Clock:
    """The report's clock: the moment the report is made and its time zone. The report's
    day (and the dated folder `runreport run` writes it into) and every time it shows
    read by it, times always with the zone's name."""

    def __init__(self, timezone_name: str, now: datetime | None = None) -> None:
        self.timezone = timezone_name
        self.zone = ZoneInfo(timezone_name)
        now = now or datetime.now(timezone.utc)
        self.now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def when(self, value: datetime | None) -> str:
        if value is None:
            return ""
        local = value.astimezone(self.zone)
        return f"{local:%Y-%m-%d %H:%M} {local.tzname() or self.timezone}"

    def as_of(self, value: datetime | None) -> str:
        """A moment as "06:02 UTC" on the report's day, with its date on any other."""
        if value is None:
            return "unknown"
        local = value.astimezone(self.zone)
        zone = local.tzname() or self.timezone
        if local.date() == self.today:
            return f"{local:%H:%M} {zone}"
        return f"{local:%Y-%m-%d %H:%M} {zone}"

    def day(self, value: date | datetime | None) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(self.zone).date()
        return f"{value:%a %Y-%m-%d}"


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

    def rows_in(self, rows: list[Row], column: str = "start_time") -> list[Row]:
        """The rows whose `column` is in the window."""
        return [row for row in rows if row[column] is not None and row[column] >= self.start]


@dataclass
class Section:
    """One table of the report: the rows shown, and how many the full list holds."""

    view: str
    rows: list[Row]
    total: int  # rows in this section (in the window, where it applies)
    in_view: int  # rows in the whole view, i.e. in its CSV file
    windowed: bool = False

    @classmethod
    def screenful(cls, view: str, rows: list[Row], in_view: int, windowed: bool = False) -> Section:
        """The section showing the first SCREENFUL of `rows`."""
        return cls(view, rows[:SCREENFUL], len(rows), in_view, windowed)

    @property
    def csv(self) -> str:
        return csv_file(self.view)

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


@dataclass
class Curve:
    rank: int
    run_id: str
    run_name: str | None
    row: Row  # the run's metric_curves figures
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class CurveGroup:
    experiment_id: str
    experiment_name: str
    metric_key: str
    greater_is_better: bool
    curves: list[Curve] = field(default_factory=list)
    data_uri: str = ""


@dataclass
class LearningCurves:
    has_history: bool = False
    groups: list[CurveGroup] = field(default_factory=list)
    more_experiments: int = 0
    top_runs: int = TOP_RUNS
    unread_runs: int = 0  # runs whose history the last extract asked for and could not read


class ModelVersionLinks(Protocol):
    def model_version(self, name: object, version: object) -> str: ...


@dataclass
class Entities:
    versions: Section  # model versions registered in the window
    alias_moves: Section  # alias changes seen in the window
    best_models: Section
    datasets: Section
    traces_per_day: Section  # days of the window with traces
    pass_rates: Section
    has_traces: bool  # any trace at all, in or out of the window
    cost_by_model: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    usage_by_user: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    by_trace_name: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    open_issues: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    prompt_versions: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    prompt_moves: Section = field(default_factory=lambda: Section.screenful("", [], 0))
    cost: float | None = None  # the traces' cost in the window (USD), None without cost
    previous_cost: float | None = None  # in the window of the same length before it

    def figures(self) -> dict[str, Any]:
        """What report.json carries: `models` always, `traces` only when traces exist."""
        figures: dict[str, Any] = {
            "models": {
                "versions_registered": self.versions.total,
                "alias_moves": self.alias_moves.total,
            }
        }
        if self.has_traces:
            days = self.traces_per_day.rows
            traces = sum(row["traces"] for row in days)
            errors = sum(row["errors"] for row in days)
            figures["traces"] = {
                "traces": traces,
                "errors": errors,
                "error_rate": errors / traces if traces else None,
                "cost_usd": self.cost,
                "previous_cost_usd": self.previous_cost,
                "open_issues": self.open_issues.total,
            }
        figures["prompts"] = {
            "versions_registered": self.prompt_versions.total,
            "alias_moves": self.prompt_moves.total,
        }
        return figures

    @staticmethod
    def version_url(links: ModelVersionLinks, name: object, version: object) -> str:
        """Links.model_version, for templates of your own written before it."""
        return links.model_version(name, version)


@dataclass
class Freshness:
    """How fresh the report's data is: the last successful extract (the oldest source's
    last, with several) and any extract that failed after it."""

    data_as_of: datetime | None = None  # when the last successful extract ended (UTC)
    extract_mode: str | None = None  # its mode: full or incremental
    failed_at: datetime | None = None  # the newest failed extract after it, if any
    failure: str | None = None  # that failure, one line
    notices: list[str] = field(default_factory=list)  # what the last extract left out

    def figures(self) -> dict[str, Any]:
        """What report.json carries."""
        failure = None
        if self.failed_at is not None:
            failure = {"failed_at": utc_text(self.failed_at), "error": self.failure}
        return {
            "data_as_of": utc_text(self.data_as_of) if self.data_as_of else None,
            "extract_mode": self.extract_mode,
            "extract_failure": failure,
            "extract_notices": self.notices,
        }


@dataclass
class ReportData:
    clock: Clock
    window: Window
    figures: dict[str, Any]
    views: dict[str, ViewRows]
    sections: dict[str, Section] = field(default_factory=dict)
    period: str = "day"  # "day", "week" or "month": what one row of per_day counts
    per_day: list[Row] = field(default_factory=list)  # every period of the window, oldest first
    trends: list[Row] = field(default_factory=list)
    tracking_uri: str | None = None
    sources: int = 1  # tracking stores combined in the warehouse ([[sources]])
    workspaces: list[str] = field(default_factory=list)  # the MLflow workspaces reported
    curves: LearningCurves = field(default_factory=LearningCurves)
    entities: Entities | None = None
    freshness: Freshness = field(default_factory=Freshness)
    experiment_names: list[str] = field(default_factory=list)  # every one, for cutting names
    children: dict[str, list[str]] = field(default_factory=dict)  # shown parent -> child ids
    dataset_sources: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, digest)
    best_params: dict[str, dict[str, str]] = field(default_factory=dict)  # best run -> params

    @property
    def timezone(self) -> str:
        return self.clock.timezone

    @property
    def generated_at(self) -> datetime:
        return self.clock.now
