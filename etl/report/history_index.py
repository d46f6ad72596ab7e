"""report.out/index.html: every retained dated report, newest first, with its date, its
headline figures and the changes it carried, each linking to its folder.

Read from each dated folder's report.json (docs/contract.md), never from the warehouse, so
the index says what each report said on its day. Written by `runreport run` after pruning,
atomically; self-contained like the report (inline CSS, no request leaves the page); the
template (reports_index.html.j2, overridable in report.templates) is autoescaped, since
experiment and run names are user input.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jinja2

from etl.report.model import REPORT_JSON
from etl.resources import templates_dir
from etl.warehouse.atomic import write_file

log = logging.getLogger("runreport")

HISTORY_INDEX = "index.html"
INDEX_TEMPLATE = "reports_index.html.j2"
FIGURES = ("new_runs", "failed", "running", "zombies", "runs", "experiments")
NAMES_SHOWN = 5  # runs named per change line; the rest are counted


@dataclass(frozen=True)
class ReportEntry:
    """One dated report as the index lists it."""

    day: str  # YYYY-MM-DD, the folder's name
    link: str  # relative to the index: YYYY-MM-DD/index.html
    headline: str | None
    figures: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    compared: bool = True  # False for a first report: nothing to compare with
    data_as_of: str | None = None
    extract_failure: str | None = None  # the failure its banner showed


def dated_folders(out: Path) -> list[Path]:
    """The folders of `out` named by a date (YYYY-MM-DD, not a link), newest first."""
    found = []
    for folder in out.iterdir() if out.is_dir() else []:
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.name == day.isoformat() and folder.is_dir() and not folder.is_symlink():
            found.append(folder)
    return sorted(found, key=lambda folder: folder.name, reverse=True)


def report_entries(out: Path) -> list[ReportEntry]:
    """An entry per dated folder holding a report.json for its date, newest first; a
    folder without one (not a report, or one cut short) is left out."""
    entries = []
    for folder in dated_folders(out):
        try:
            report = json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or report.get("date") != folder.name:
            continue
        entries.append(entry_of(folder.name, report))
    return entries


def entry_of(day: str, report: dict[str, Any]) -> ReportEntry:
    failure = report.get("extract_failure")
    changes = report.get("changes")
    return ReportEntry(
        day=day,
        link=f"{day}/index.html",
        headline=_text(report.get("headline")),
        figures={name: report.get(name) for name in FIGURES},
        changes=change_lines(changes) if isinstance(changes, dict) else [],
        compared=isinstance(changes, dict),
        data_as_of=_text(report.get("data_as_of")),
        extract_failure=_text(failure.get("error")) if isinstance(failure, dict) else None,
    )


def change_lines(changes: dict[str, Any]) -> list[str]:
    """One line per change a report carried (report.json `changes`), in its order."""
    lines = []
    for best in _rows(changes.get("new_best")):
        was = best.get("previous_value")
        lines.append(
            f"New best in {_experiment(best)}: {_run(best)}, {best.get('metric')} "
            f"{_number(best.get('value'))}" + (f" (was {_number(was)})" if was is not None else "")
        )
    for removed in _rows(changes.get("best_removed")):
        lines.append(
            f"Best removed in {_experiment(removed)}: {_run(removed)}, {removed.get('metric')} "
            f"{_number(removed.get('value'))}"
        )
    for key, words in (
        ("new_failures", "new failed run"),
        ("new_stuck", "new stuck run"),
        ("new_parents_left_open", "new parent left open"),
    ):
        rows = _rows(changes.get(key))
        if rows:
            names = ", ".join(_run(row) for row in rows[:NAMES_SHOWN])
            more = f" and {len(rows) - NAMES_SHOWN} more" if len(rows) > NAMES_SHOWN else ""
            lines.append(f"{len(rows)} {words}{'s' if len(rows) != 1 else ''}: {names}{more}")
    return lines


def render_history_index(entries: list[ReportEntry], templates: Path | None = None) -> str:
    folders = [str(templates)] if templates is not None and templates.is_dir() else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*folders, str(templates_dir())]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = _number
    return env.get_template(INDEX_TEMPLATE).render(reports=entries)


def write_history_index(out: Path, templates: Path | None = None) -> int:
    """Rewrite out/index.html from the dated reports in `out`; returns how many it lists."""
    entries = report_entries(out)
    write_file(out / HISTORY_INDEX, render_history_index(entries, templates).encode("utf-8"))
    return len(entries)


def _rows(value: object) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _experiment(row: dict[str, Any]) -> str:
    return str(row.get("experiment_name") or row.get("experiment_id") or "?")


def _run(row: dict[str, Any]) -> str:
    return str(row.get("run_name") or row.get("run_id") or "?")


def _number(value: object) -> str:
    """A figure as the index shows it: whole numbers as they are, others to 4 digits."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"
