"""The report's Models, Datasets and GenAI sections (MLflow 3 entities beyond runs), read
from the views the warehouse holds for them.

Versions registered and alias moves are cut to the report's window (their views hold all
history, like the CSV files); the best logged model and runs per dataset cover all
history; traces per day are cut to the window's days. GenAI shows only when the
warehouse holds any trace.
"""

from __future__ import annotations

from etl.report.model import Entities, Row, Section, ViewRows, Window


def load_entities(views: dict[str, ViewRows], window: Window) -> Entities:
    def windowed(name: str, column: str) -> Section:
        rows = window.rows_in(views[name].rows, column)
        return Section.screenful(name, rows, len(views[name].rows), windowed=True)

    def whole(name: str) -> Section:
        rows = views[name].rows
        return Section.screenful(name, rows, len(rows))

    traces = views["traces_per_day"].rows
    return Entities(
        versions=windowed("model_versions_registered", "registered_at"),
        alias_moves=windowed("alias_moves", "observed_at"),
        best_models=whole("best_logged_model"),
        datasets=whole("runs_per_dataset"),
        traces_per_day=Section.screenful(
            "traces_per_day", days_in_window(traces, window), len(traces), True
        ),
        pass_rates=whole("assessment_pass_rates"),
        has_traces=bool(traces),
    )


def days_in_window(rows: list[Row], window: Window) -> list[Row]:
    """Rows dated (in the report's time zone) from the window's first day on."""
    return [row for row in rows if row["request_date"] >= window.first_day]
