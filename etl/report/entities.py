"""The report's Models, Prompts, Datasets and GenAI sections (MLflow 3 entities beyond
runs), read from the views and tables the warehouse holds for them.

Versions registered and alias moves (of models and of prompts) are cut to the report's
window (their views hold all history, like the CSV files); the best logged model and runs
per dataset cover all history; traces per day are cut to the window's days. GenAI shows
only when the warehouse holds any trace: cost per model in the window against the window
of the same length before it, usage per user and latency per trace name over all history
(their views are not dated), pass rates over valid feedback, and MLflow's open issues,
those found in the window first, then by severity.
"""

from __future__ import annotations

from datetime import timedelta

from etl.report.model import Entities, Row, Section, ViewRows, Window

# MLflow's issue statuses that are done with; any other is open
CLOSED_ISSUES = {"RESOLVED", "REJECTED", "CLOSED"}
SEVERITY_ORDER = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}


def load_entities(views: dict[str, ViewRows], window: Window) -> Entities:
    def windowed(name: str, column: str, rows: list[Row] | None = None) -> Section:
        listed = views[name].rows if rows is None else rows
        return Section.screenful(name, window.rows_in(listed, column), len(listed), True)

    def whole(name: str, rows: list[Row] | None = None) -> Section:
        listed = views[name].rows if rows is None else rows
        return Section.screenful(name, listed, len(listed))

    moves = views["alias_moves"].rows
    prompts_newest_first = sorted(
        views["prompt_versions"].rows, key=lambda row: row["creation_time"], reverse=True
    )
    traces = views["traces_per_day"].rows
    cost_rows, cost, previous_cost = cost_by_model(views["genai_cost_per_day"].rows, window)
    return Entities(
        versions=windowed("model_versions_registered", "registered_at"),
        alias_moves=windowed("alias_moves", "observed_at", of_kind(moves, "model")),
        best_models=whole("best_logged_model"),
        datasets=whole("runs_per_dataset"),
        traces_per_day=Section.screenful(
            "traces_per_day", days_in_window(traces, window), len(traces), True
        ),
        pass_rates=whole("assessment_pass_rates"),
        has_traces=bool(traces),
        cost_by_model=Section.screenful("genai_cost_per_day", cost_rows, len(cost_rows), True),
        usage_by_user=whole("genai_usage_per_user"),
        by_trace_name=whole("traces_by_name"),
        open_issues=whole("issues", open_issues(views["issues"].rows, window)),
        prompt_versions=windowed("prompt_versions", "creation_time", prompts_newest_first),
        prompt_moves=windowed("alias_moves", "observed_at", of_kind(moves, "prompt")),
        cost=cost,
        previous_cost=previous_cost,
    )


def of_kind(moves: list[Row], kind: str) -> list[Row]:
    return [row for row in moves if row.get("kind", "model") == kind]


def cost_by_model(rows: list[Row], window: Window) -> tuple[list[Row], float | None, float | None]:
    """Per model, the cost (USD), calls and traces of the window's days, and the cost of the
    days of the same length before them; most costly first. With the two totals (None
    when no trace in them carries a cost)."""
    first = window.first_day
    before = first - timedelta(days=window.days)
    models: dict[tuple[object, object], Row] = {}
    totals: dict[str, float | None] = {"now": None, "before": None}
    for row in rows:
        when = "now" if row["day"] >= first else "before" if row["day"] >= before else None
        if when is None:
            continue
        model = models.setdefault(
            (row["model_name"], row["model_provider"]),
            {
                "model_name": row["model_name"],
                "model_provider": row["model_provider"],
                "cost": None,
                "previous_cost": None,
                "calls": 0,
                "traces": 0,
            },
        )
        key = "cost" if when == "now" else "previous_cost"
        if row["cost"] is not None:
            model[key] = (model[key] or 0.0) + row["cost"]
            totals[when] = (totals[when] or 0.0) + row["cost"]
        if when == "now":
            model["calls"] += row["calls"] or 0
            model["traces"] += row["traces"] or 0
    listed = [row for row in models.values() if row["calls"]]
    listed.sort(key=lambda row: (-(row["cost"] or 0.0), str(row["model_name"])))
    return listed, totals["now"], totals["before"]


def open_issues(rows: list[Row], window: Window) -> list[Row]:
    """The issues still open: those found in the window first, then by severity, newest
    first."""
    found = [row for row in rows if str(row["status"]).upper() not in CLOSED_ISSUES]
    for row in found:
        row["is_new"] = row["created_time"] is not None and row["created_time"] >= window.start
    return sorted(
        found,
        key=lambda row: (
            not row["is_new"],
            SEVERITY_ORDER.get(str(row["severity"]).upper(), len(SEVERITY_ORDER)),
            -(row["created_time"].timestamp() if row["created_time"] else 0),
        ),
    )


def days_in_window(rows: list[Row], window: Window) -> list[Row]:
    """Rows dated (in the report's time zone) from the window's first day on."""
    return [row for row in rows if row["request_date"] >= window.first_day]
