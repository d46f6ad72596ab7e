"""`runreport report`: render the warehouse views into a folder.

The folder gets index.html (the full, self-contained report), email.html (CSS inlined,
charts as cid: images), summary.txt (the email's text part), report.json (the headline
figures, what changed since the previous report and what the next one compares with),
the chart PNGs and one CSV per view. It is rendered into a temporary folder beside `out`
and swapped in only when complete (in one atomic exchange where the system has one), so
a failed or killed render leaves the previous report whole. Files and the folder follow
the process umask, so a web server can serve the folder when the umask allows it.

The warehouse is opened read-only; `settings` (from --config) are laid over the ones it
holds for this render only (see etl/warehouse/settings.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import css_inline
import duckdb

from etl.errors import ConfigError, JobFailed
from etl.report import charts, curves
from etl.report.changes import REPORT_JSON, Changes, compare, previous_report, state_of
from etl.report.csv_export import write_csv
from etl.report.data import VIEWS_USED, ReportData, load_report_data
from etl.report.format import Clock
from etl.report.links import Links
from etl.report.templates import Templates
from etl.values import to_json
from etl.warehouse.build import TMP_MARK
from etl.warehouse.connect import open_warehouse
from etl.warehouse.folder_swap import remove_leftovers, swap_in
from etl.warehouse.settings import ViewSettings, apply_settings

if TYPE_CHECKING:
    from etl.config import Config

EMAIL_ROWS = 10

log = logging.getLogger("runreport")


@dataclass
class ReportResult:
    out: Path
    index_html: Path
    email_html: Path
    summary_txt: Path
    csv_files: list[Path] = field(default_factory=list)
    chart_pngs: list[Path] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] | None = None  # as report.json holds it; None: the first report


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
    settings: ViewSettings | None = None,
    ui_url: str | None = None,
    public_url: str | None = None,
    previous: Path | None = None,
) -> ReportResult:
    """Render every report file into `out` (replaced whole) and return where they are.

    `settings`: the view settings to apply (None: those the warehouse holds). `ui_url`:
    the MLflow UI runs link to (None: the tracking URI when it is http(s)). `public_url`:
    where `out` is served, for the email's links. `previous`: the previous report (its
    folder or report.json) to compare with; default `out/report.json` when present."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    pages = Templates(templates)  # a broken template fails before any work
    check_out_folder(out)
    remove_leftovers(
        out, TMP_MARK, REPORT_JSON
    )  # first: it may put back a report a killed render left aside
    data = read_warehouse(db, now, since, days, settings)
    links = Links.resolve(ui_url, public_url, data.tracking_uri)
    if data.sources > 1 and links.ui:
        # one UI address cannot serve the runs of several tracking servers
        log.info("%d tracking sources: runs and experiments are not linked", data.sources)
        links = Links(None, links.public)
    changes = compare(previous_report(previous or out / REPORT_JSON), data)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARK}", dir=out.parent))
    try:
        os.chmod(work, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        result = write_report(data, pages, work, out, links, changes)
        swap_in(work, out, TMP_MARK)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def render_from_config(
    config: Config,
    out: Path,
    *,
    since: date | None = None,
    now: datetime | None = None,
    public_url: str | None = None,
    previous: Path | None = None,
) -> ReportResult:
    """render_report with what the configuration says (etl.config.resolve), as `report`,
    `email` and `run` call it. The view settings apply only where the user gave some."""
    return render_report(
        config.db,
        out,
        since=since,
        days=config.days,
        templates=config.templates,
        now=now,
        settings=ViewSettings.given_in(config),
        ui_url=config.mlflow_ui_url,
        public_url=public_url or config.public_url,
        previous=previous,
    )


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_warehouse(
    db: Path, now: datetime, since: date | None, days: int, settings: ViewSettings | None = None
) -> ReportData:
    con = open_warehouse(db, read_only=True)
    try:
        missing = missing_views(con)
        if missing:
            raise ConfigError(
                f"warehouse {db} lacks the report views ({', '.join(missing)})",
                f"Run runreport extract --db {db} to rebuild it with the views",
            )
        try:
            if settings is not None:
                apply_settings(con, settings)
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


def write_report(
    data: ReportData, pages: Templates, work: Path, out: Path, links: Links, changes: Changes
) -> ReportResult:
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
        "period": data.period,
        "trends": data.trends,
        "changes": changes,
        "links": links,
        "charts": {chart.file.removesuffix(".png"): chart for chart in chart_list},
        "curves": curves.drawn_curves(data.curves, work),
        "entities": data.entities,
        "email_rows": EMAIL_ROWS,
    }
    clock = Clock(data.timezone)
    index = pages.render("index.html.j2", context, clock, links)
    email = css_inline.inline(
        pages.render("email.html.j2", context, clock, links), load_remote_stylesheets=False
    )
    summary = pages.render("summary.txt.j2", context, clock, links)
    (work / "index.html").write_text(index, encoding="utf-8")
    (work / "email.html").write_text(email, encoding="utf-8")
    (work / "summary.txt").write_text(summary, encoding="utf-8")
    saved = {
        **data.figures,
        "since": changes.since,
        "changes": changes.as_json(),
        "state": state_of(data),
    }
    (work / REPORT_JSON).write_text(
        json.dumps(to_json(saved), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return ReportResult(
        out=out,
        index_html=out / "index.html",
        email_html=out / "email.html",
        summary_txt=out / "summary.txt",
        csv_files=[out / path.name for path in csv_files],
        chart_pngs=[out / chart.file for chart in chart_list],
        figures=dict(data.figures),
        changes=saved["changes"],
    )


def draw_charts(data: ReportData, work: Path) -> list[Chart]:
    sections = data.sections
    drawn = [
        (
            "Runs per day",
            charts.runs_per_day_chart(data.per_day, work / "runs_per_day.png", data.period),
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
