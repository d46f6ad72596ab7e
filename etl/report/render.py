"""`runreport report`: render the warehouse views into a folder.

The folder gets index.html (the full, self-contained report), email.html (CSS inlined,
charts as cid: images), summary.txt (the email's text part), report.json (the headline
figures), the chart PNGs and one CSV per view. It is rendered into a temporary folder
beside `out` and swapped in only when complete, so a failed render leaves the previous
report whole.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import css_inline
import duckdb

from etl.errors import ConfigError, JobFailed
from etl.report import charts
from etl.report.csv_export import write_csv
from etl.report.data import VIEWS_USED, ReportData, load_report_data
from etl.report.format import Clock
from etl.report.templates import Templates
from etl.warehouse.build import TMP_MARK, connect

OLD_MARK = ".runreport-old-"
LEFTOVER_AGE_S = 6 * 3600
EMAIL_ROWS = 10


@dataclass
class ReportResult:
    out: Path
    index_html: Path
    email_html: Path
    summary_txt: Path
    csv_files: list[Path] = field(default_factory=list)
    chart_pngs: list[Path] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chart:
    file: str  # the PNG's name in the report folder, also its cid: in email.html
    title: str
    data_uri: str


def render_report(
    db: Path,
    out: Path,
    *,
    since: date | None = None,
    days: int = 7,
    templates: Path | None = None,
    now: datetime | None = None,
) -> ReportResult:
    """Render every report file into `out` (replaced whole) and return where they are."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    pages = Templates(templates)  # a broken template fails before any work
    check_out_folder(out)
    data = read_warehouse(db, now, since, days)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARK}", dir=out.parent))
    try:
        result = write_report(data, pages, work, out)
        swap_in(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def read_warehouse(db: Path, now: datetime, since: date | None, days: int) -> ReportData:
    if not db.is_file():
        raise ConfigError(
            f"warehouse {db} not found",
            f"Build it first: runreport extract --db {db}",
        )
    try:
        con = connect(db, read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(
            f"cannot open the warehouse {db}: {exc}", f"Rebuild it: runreport extract --db {db}"
        ) from None
    try:
        missing = missing_views(con)
        if missing:
            raise ConfigError(
                f"warehouse {db} lacks the report views ({', '.join(missing)})",
                f"Run runreport extract --db {db} to rebuild it with the views",
            )
        try:
            return load_report_data(con, now, since, days)
        except duckdb.Error as exc:
            raise JobFailed(
                f"reading the views of {db} failed: {exc}", "Run runreport extract again"
            ) from None
    finally:
        con.close()


def missing_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    present = {
        name
        for (name,) in con.execute("select table_name from information_schema.tables").fetchall()
    }
    return [name for name in (*VIEWS_USED, "runreport_settings") if name not in present]


def write_report(data: ReportData, pages: Templates, work: Path, out: Path) -> ReportResult:
    csv_files = [work / f"{name}.csv" for name in VIEWS_USED]
    for path in csv_files:
        view = data.views[path.stem]
        write_csv(path, view.columns, view.tuples())
    chart_list = draw_charts(data, work)
    context = {
        "figures": data.figures,
        "window": data.window,
        "timezone": data.timezone,
        "generated_at": data.generated_at,
        "s": data.sections,
        "per_day": data.per_day,
        "charts": {chart.file.removesuffix(".png"): chart for chart in chart_list},
        "out": str(out.resolve()),
        "email_rows": EMAIL_ROWS,
    }
    clock = Clock(data.timezone)
    index = pages.render("index.html.j2", context, clock)
    email = css_inline.inline(
        pages.render("email.html.j2", context, clock), load_remote_stylesheets=False
    )
    summary = pages.render("summary.txt.j2", context, clock)
    (work / "index.html").write_text(index, encoding="utf-8")
    (work / "email.html").write_text(email, encoding="utf-8")
    (work / "summary.txt").write_text(summary, encoding="utf-8")
    (work / "report.json").write_text(json.dumps(data.figures, indent=2) + "\n", encoding="utf-8")
    return ReportResult(
        out=out,
        index_html=out / "index.html",
        email_html=out / "email.html",
        summary_txt=out / "summary.txt",
        csv_files=[out / path.name for path in csv_files],
        chart_pngs=[out / chart.file for chart in chart_list],
        figures=dict(data.figures),
    )


def draw_charts(data: ReportData, work: Path) -> list[Chart]:
    sections = data.sections
    drawn = [
        (
            "Runs per day",
            charts.runs_per_day_chart(data.per_day, work / "runs_per_day.png"),
        ),
        (
            "Runs per estimator",
            charts.estimator_chart(
                data.views["runs_per_estimator"].rows, work / "runs_per_estimator.png"
            ),
        ),
        (
            "Runs by status",
            charts.status_chart(sections["runs_by_status"].rows, work / "runs_by_status.png"),
        ),
    ]
    return [
        Chart(path.name, title, png_data_uri(path)) for title, path in drawn if path is not None
    ]


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def check_out_folder(out: Path) -> None:
    """`out` is replaced whole: refuse a folder that holds anything but an earlier report."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"report folder {out} is a file", "Choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise ConfigError(
            f"report folder {out} holds files that are not a runreport report, and the "
            "report replaces the whole folder",
            "Choose a new or empty folder for --out",
        )


def swap_in(work: Path, out: Path) -> None:
    """Rename the old report aside, the new one in, then delete the old one."""
    old = None
    if out.exists():
        old = work.with_name(work.name.replace(TMP_MARK, OLD_MARK))
        os.replace(out, old)
    try:
        os.replace(work, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(out: Path) -> None:
    """Temporary folders of renders killed before they could clean up (hours old)."""
    if not out.parent.is_dir():
        return
    cutoff = time.time() - LEFTOVER_AGE_S
    for mark in (TMP_MARK, OLD_MARK):
        for leftover in out.parent.glob(f".{out.name}{mark}*"):
            with contextlib.suppress(OSError):
                if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover)
