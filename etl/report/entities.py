"""The report's Models, Datasets and GenAI sections (MLflow 3 entities beyond runs), read
from the views the warehouse holds for them.

Versions registered and alias moves are cut to the report's window (their views hold all
history, like the CSV files); the best logged model and runs per dataset cover all
history; traces per day are cut to the window's days. GenAI shows only when the
warehouse holds any trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from etl.report.data import Row, Section, ViewRows, Window, cut, in_window
from etl.report.links import Links


@dataclass
class Entities:
    versions: Section  # model versions registered in the window
    alias_moves: Section  # alias changes seen in the window
    best_models: Section
    datasets: Section
    traces_per_day: Section  # days of the window with traces
    pass_rates: Section
    has_traces: bool  # any trace at all, in or out of the window

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
            }
        return figures

    @staticmethod
    def version_url(links: Links, name: object, version: object) -> str:
        """A registered model version in the MLflow UI; empty when the UI is unknown."""
        if not links.ui or name is None or version is None:
            return ""
        model, number = quote(str(name), safe=""), quote(str(version), safe="")
        return f"{links.ui}/#/models/{model}/versions/{number}"


def load_entities(views: dict[str, ViewRows], window: Window) -> Entities:
    def windowed(name: str, column: str) -> Section:
        rows = in_window(views[name].rows, window, column)
        return cut(name, rows, len(views[name].rows), windowed=True)

    def whole(name: str) -> Section:
        rows = views[name].rows
        return cut(name, rows, len(rows))

    traces = views["traces_per_day"].rows
    return Entities(
        versions=windowed("model_versions_registered", "registered_at"),
        alias_moves=windowed("alias_moves", "observed_at"),
        best_models=whole("best_logged_model"),
        datasets=whole("runs_per_dataset"),
        traces_per_day=cut("traces_per_day", days_in_window(traces, window), len(traces), True),
        pass_rates=whole("assessment_pass_rates"),
        has_traces=bool(traces),
    )


def days_in_window(rows: list[Row], window: Window) -> list[Row]:
    """Rows dated (in the report's time zone) from the window's first day on."""
    return [row for row in rows if row["request_date"] >= window.first_day]
