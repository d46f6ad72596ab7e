"""The report's charts as PNG files, drawn by matplotlib (Agg: no display needed), and
as data URIs for the HTML report.

Labels come from user input (estimator names), so math text is off: a `$` stays a `$`.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from etl.report.model import CurveGroup

# One per status of etl.report.model.STATUSES, in that order, in the hues of the HTML
# report's status badges (templates/_colours.css.j2), so a chart and its table agree.
STATUS_COLOURS = {
    "FINISHED": "#2f855a",
    "FAILED": "#c53030",
    "KILLED": "#b7791f",
    "RUNNING": "#2b6cb0",
    "SCHEDULED": "#718096",
}
OTHER_COLOUR = "#a0aec0"
ACCENT = "#3b5b92"
INK = "#2d3748"
MUTED = "#718096"
GRID = "#e2e8f0"
WIDTH_IN = 7.0
DPI = 160
LABEL_CHARS = 28

STYLE: Any = {  # matplotlib types rc keys as literals
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "sans-serif"],
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.titlesize": 10,
    "xtick.color": MUTED,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",
}


def _label(text: object) -> str:
    value = "(none)" if text is None else str(text)
    return value if len(value) <= LABEL_CHARS else value[: LABEL_CHARS - 1] + "…"


def _save(fig: Figure, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph missing" for scripts the font lacks
        fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


TICK_FORMATS = {"day": "%b %d", "week": "%b %d", "month": "%b %y"}
MAX_TICKS = 8


def runs_per_day_chart(
    days: Sequence[dict[str, Any]], path: Path, period: str = "day"
) -> Path | None:
    """Stacked bars of runs per period (day, week or month) by status; None when the
    window holds no runs. At most about ten labels, whatever the number of bars."""
    if not any(day["runs"] for day in days):
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.6), layout="constrained")
        positions = list(range(len(days)))
        bottom = [0] * len(days)
        for status, colour in STATUS_COLOURS.items():
            heights = [day.get(status.lower(), 0) or 0 for day in days]
            if not any(heights):
                continue
            ax.bar(positions, heights, bottom=bottom, color=colour, width=0.7, label=status.lower())
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        other = [day["runs"] - b for day, b in zip(days, bottom, strict=True)]
        if any(other):
            ax.bar(positions, other, bottom=bottom, color=OTHER_COLOUR, width=0.7, label="other")
        step = -(-len(days) // MAX_TICKS)  # at most MAX_TICKS labels
        ax.set_xticks(positions[::step])
        tick = TICK_FORMATS.get(period, "%b %d")
        ax.set_xticklabels([f"{day['start_date']:{tick}}" for day in days][::step])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(length=0)
        ax.legend(
            frameon=False,
            ncols=5,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            fontsize=8,
            handlelength=1,
            handleheight=1,
        )
        return _save(fig, path)


def horizontal_bars(
    labels: Sequence[object],
    values: Sequence[int],
    path: Path,
    colours: Sequence[str] | None = None,
) -> Path | None:
    """One bar per label, largest on top, with its count at the bar's end."""
    if not values or not any(values):
        return None
    with plt.rc_context(STYLE):
        height = 0.45 + 0.3 * len(values)
        fig, ax = plt.subplots(figsize=(WIDTH_IN, height), layout="constrained")
        positions = list(range(len(values)))[::-1]
        ax.barh(positions, values, color=list(colours or [ACCENT] * len(values)), height=0.62)
        ax.set_yticks(positions)
        ax.set_yticklabels([_label(label) for label in labels])
        peak = max(values)
        for position, value in zip(positions, values, strict=True):
            ax.text(
                value + peak * 0.01,
                position,
                f"{value:,}",
                va="center",
                ha="left",
                color=INK,
                fontsize=8,
            )
        ax.set_xlim(0, peak * 1.12)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax.grid(axis="x", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(length=0)
        ax.spines["left"].set_visible(False)
        return _save(fig, path)


def estimator_chart(rows: Sequence[dict[str, Any]], path: Path, limit: int = 12) -> Path | None:
    shown = list(rows[:limit])
    return horizontal_bars(bar_labels(shown, "estimator_name"), [r["runs"] for r in shown], path)


def status_chart(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    colours = [STATUS_COLOURS.get(row["status"], OTHER_COLOUR) for row in rows]
    return horizontal_bars(bar_labels(rows, "status"), [r["runs"] for r in rows], path, colours)


def bar_labels(rows: Sequence[dict[str, Any]], key: str) -> list[str]:
    """Each row's `key`, led by its MLflow workspace when the rows are of several (a view
    counts per workspace: 'team-a: Ridge')."""
    several = len({row.get("workspace") for row in rows}) > 1
    return [f"{row['workspace']}: {row[key]}" if several else str(row[key]) for row in rows]


ORDER_LABEL = "logged order"


def curve_chart(group: CurveGroup, path: Path) -> Path | None:
    """A learning-curve chart: one line per run with points to draw, metric against its
    axis (the step, or the point's position in logged order where the run's steps do not
    vary); the leader drawn heaviest. None when no run has points to draw."""
    drawn = [curve for curve in group.curves if curve.steps]
    if not drawn:
        return None
    axes = {curve.row.get("axis", "step") for curve in drawn}
    direction = "higher is better" if group.greater_is_better else "lower is better"
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.0), layout="constrained")
        for curve in drawn:
            order = curve.row.get("axis") == "order" and len(axes) > 1
            ax.plot(
                curve.steps,
                curve.values,
                linewidth=2.2 if curve.rank == 1 else 1.2,
                linestyle="--" if order else "-",
                label=f"#{curve.rank} {_label(curve.run_name or curve.run_id)}"
                + (f" ({ORDER_LABEL})" if order else ""),
            )
        ax.set_xlabel(_axis_label(axes))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(_label(group.metric_key))
        ax.set_title(f"{_label(group.experiment_name)}: {direction}", loc="left")
        ax.grid(True, color=GRID, linewidth=0.6)
        ax.margins(x=0.02)
        ax.legend(fontsize=8, frameon=False, loc="best")
    return _save(fig, path)


def _axis_label(axes: set[str]) -> str:
    if axes == {"order"}:
        return f"point, in {ORDER_LABEL} (steps not logged)"
    if "order" in axes:
        return f"step; dashed: point, in {ORDER_LABEL} (steps not logged)"
    return "step"
