"""`runreport report`: render the warehouse views into a folder.

The folder gets index.html (the full, self-contained report), email.html (CSS inlined,
charts as cid: images), summary.txt (the email's text part), report.json (the headline
figures, what changed since the previous report and what the next one compares with),
the chart PNGs and one CSV per view. It is rendered into a temporary folder beside `out`
and swapped in only when complete (etl.warehouse.atomic), so a failed or killed render
leaves the previous report whole. Files and the folder follow the process umask, so a web
server can serve the folder when the umask allows it.

The warehouse is opened read-only; `settings` (from --config) are laid over the ones it
holds for this render only (see etl/warehouse/settings.py). The report's clock (its
moment, and the time zone of those settings) dates the report; `report_clock` gives it to
a caller that needs the report's day first, as `runreport run` names its folder by it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import css_inline
import duckdb

from etl.errors import ConfigError, JobFailed
from etl.report import charts, curves
from etl.report.changes import Changes, compare, previous_report, state_of
from etl.report.csv_export import view_query, write_csv, write_query_csv
from etl.report.data import load_report_data, read_clock, read_freshness, view_columns
from etl.report.format import NameCutter, headline
from etl.report.links import Links
from etl.report.model import (
    EMAIL_HTML,
    INDEX_HTML,
    REPORT_JSON,
    SUMMARY_TXT,
    VIEWS_USED,
    Clock,
    ReportData,
    csv_file,
)
from etl.report.safe_html import escape_attributes
from etl.report.templates import PAGES, Templates
from etl.schema import SOURCE_COLUMN, WORKSPACE_COLUMN
from etl.values import to_json
from etl.warehouse.atomic import remove_leftovers, write_folder
from etl.warehouse.connect import open_warehouse, quote_ident
from etl.warehouse.settings import ViewSettings, apply_settings

if TYPE_CHECKING:
    from etl.config import Config

EMAIL_ROWS = 10
# the views the report's views build on, in dependency order (see share_base_views);
# none reads the clock (now()), so a table of their rows is the view for the whole render
SHARED_VIEWS = ("active_runs", "experiment_primary_metric", "ranked_runs")

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
    clock: Clock | None = None,
    experiments: Sequence[str] | None = None,
    workspaces: Sequence[str] | None = None,
) -> ReportResult:
    """Render every report file into `out` (replaced whole) and return where they are.

    `now`: the report's moment (None: the current time). `settings`: the view settings to
    apply (None: those the warehouse holds). `ui_url`: the MLflow UI runs link to (None:
    the tracking URI when it is http(s)). `public_url`: where `out` is served, for the
    email's links. `previous`: the previous report (its folder or report.json) to compare
    with; default `out/report.json` when present. `clock`: the report's clock as
    `report_clock` read it, in place of `now`. `experiments`: only these (by name) and what
    belongs to them, for a team's digest ([[mail.digests]]; None: every one). `workspaces`:
    only the experiments, registry and prompts of these MLflow workspaces (None: every
    one)."""
    if clock is not None and now is not None:
        raise TypeError("render_report takes now or clock, not both")
    pages = Templates(templates)  # a broken template fails before any work
    check_out_folder(out)
    remove_leftovers(out, REPORT_JSON)  # first: it may put back a report a killed render left aside
    # open until the CSV files are written: the big views stream into them
    with report_connection(db, settings) as con:
        scoped = experiments is not None or workspaces is not None
        if scoped:
            scope_report(con, experiments, workspaces)
        if not is_combined(con):
            share_base_views(con)
        data = read_report_data(con, db, now, since, days, clock)
        links = Links.resolve(ui_url, public_url, data.tracking_uri)
        if data.sources > 1 and links.ui:
            # one UI address cannot serve the runs of several tracking servers
            log.info("%d tracking sources: runs and experiments are not linked", data.sources)
            links = Links(None, links.public)
        changes = compare(previous_report(previous or out / REPORT_JSON), data, scoped=scoped)
        data.figures["new_runs_since_previous"] = runs_since(con, changes)
        data.figures["headline"] = headline(data.figures, changes.as_json())
        out.parent.mkdir(parents=True, exist_ok=True)
        with write_folder(out) as work:
            csv_files = write_view_csvs(con, data, work)
            return write_report(data, pages, work, out, links, changes, csv_files)


def render_from_config(
    config: Config,
    out: Path,
    *,
    since: date | None = None,
    now: datetime | None = None,
    public_url: str | None = None,
    previous: Path | None = None,
    clock: Clock | None = None,
    experiments: Sequence[str] | None = None,
    workspaces: Sequence[str] | None = None,
) -> ReportResult:
    """render_report with what the configuration says (etl.config.resolve), as `report`,
    `email` and `run` call it. The view settings apply only where the user gave some;
    `workspaces` (a team's digest) stands for report.workspaces."""
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
        clock=clock,
        experiments=experiments,
        workspaces=workspaces or config.report_workspaces or None,
    )


def report_clock(config: Config, now: datetime | None = None) -> Clock:
    """The clock render_from_config(config, ...) reads by: `now` (None: the current time)
    in the time zone of the warehouse's settings with the configuration's laid over."""
    with report_connection(config.db, ViewSettings.given_in(config)) as con:
        return read_clock(con, now)


@contextlib.contextmanager
def report_connection(
    db: Path, settings: ViewSettings | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse read-only, with `settings` laid over its own; DuckDB's errors while
    it is read become one JobFailed naming it."""
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
            yield con
        except duckdb.Error as exc:
            raise JobFailed(
                f"reading the views of {db} failed: {exc}", "Run runreport extract again"
            ) from None
    finally:
        con.close()


def scope_report(
    con: duckdb.DuckDBPyConnection,
    experiments: Sequence[str] | None,
    workspaces: Sequence[str] | None,
) -> None:
    """Only the experiments named (None: every one) of these MLflow workspaces (None: every
    one), and the rows of every table that belong to them, for this connection: temporary
    tables of the same names, which DuckDB reads before the warehouse's (as
    share_base_views does), so every view sees the team's experiments. Workspaces cut the
    registry, the prompts and the evaluation datasets too."""
    con.execute(
        "create temp table experiments as select * from experiments "
        "where ($names is null or name in (select unnest($names))) "
        "and ($workspaces is null or workspace in (select unnest($workspaces)))",
        {
            "names": None if experiments is None else list(experiments),
            "workspaces": None if workspaces is None else list(workspaces),
        },
    )
    if workspaces is not None:
        _warn_of_empty_workspaces(con, workspaces)
    for table in _warehouse_tables_with(con, "experiment_id", "experiments"):
        con.execute(
            f"create temp table {quote_ident(table)} as select * from {quote_ident(table)} "
            "where experiment_id in (select experiment_id from temp.experiments)"
        )
    if workspaces is None:
        return
    for table in _warehouse_tables_with(con, WORKSPACE_COLUMN, "experiments"):
        con.execute(
            f"create temp table {quote_ident(table)} as select * from {quote_ident(table)} "
            "where workspace in (select unnest($workspaces))",
            {"workspaces": list(workspaces)},
        )


def _warehouse_tables_with(
    con: duckdb.DuckDBPyConnection, column: str, leaving_out: str
) -> list[str]:
    found = con.execute(
        "select distinct table_name from duckdb_columns() where database_name = "
        "current_database() and schema_name = 'main' and column_name = $column "
        "and table_name <> $leaving_out and table_name in (select table_name from "
        "duckdb_tables() where database_name = current_database() and schema_name = 'main') "
        "order by table_name",
        {"column": column, "leaving_out": leaving_out},
    ).fetchall()
    return [table for (table,) in found]


def _warn_of_empty_workspaces(con: duckdb.DuckDBPyConnection, workspaces: Sequence[str]) -> None:
    found = {
        row[0] for row in con.execute("select distinct workspace from temp.experiments").fetchall()
    }
    missing = [workspace for workspace in workspaces if workspace not in found]
    if missing:
        log.warning(
            "the report is cut to MLflow workspaces with no experiment in the warehouse: %s "
            "(check report.workspaces or the digest's workspaces)",
            ", ".join(missing),
        )


def is_combined(con: duckdb.DuckDBPyConnection) -> bool:
    """A warehouse of several [[sources]]: each source's views read their own schema's
    tables, which a temporary table of the same name would shadow."""
    return SOURCE_COLUMN in view_columns(con, "runs")


def share_base_views(con: duckdb.DuckDBPyConnection) -> None:
    """Compute the views most report views build on once, into temporary tables of the
    same names: DuckDB looks for a name among the connection's temporary objects first,
    so every view reading them reads the table (on this read-only connection only; the
    warehouse is untouched). At a million runs each costs seconds, and the report reads
    a dozen views built on them."""
    for name in SHARED_VIEWS:
        con.execute(f"create temp table {name} as select * from {name}")


def read_warehouse(
    db: Path,
    now: datetime | None,
    since: date | None,
    days: int,
    settings: ViewSettings | None = None,
    clock: Clock | None = None,
) -> ReportData:
    with report_connection(db, settings) as con:
        return read_report_data(con, db, now, since, days, clock)


def read_report_data(
    con: duckdb.DuckDBPyConnection,
    db: Path,
    now: datetime | None,
    since: date | None,
    days: int,
    clock: Clock | None = None,
) -> ReportData:
    data = load_report_data(con, clock or read_clock(con, now), since, days)
    data.freshness = read_freshness(con, db)
    data.figures.update(data.freshness.figures())
    return data


def runs_since(con: duckdb.DuckDBPyConnection, changes: Changes) -> int | None:
    """Active runs started since the previous report; None for the first report."""
    since = changes.since_time
    if since is None:
        return None
    row = con.execute(
        "select count(*) from recent_runs where start_time >= $since", {"since": since}
    ).fetchone()
    return int(row[0]) if row else 0


def write_view_csvs(con: duckdb.DuckDBPyConnection, data: ReportData, work: Path) -> list[Path]:
    """One CSV file per view the report reads, every row: from the rows read whole, or
    streamed from DuckDB for the views read a screenful at a time."""
    paths = []
    for name in VIEWS_USED:
        path = work / csv_file(name)
        if name in data.views:
            view = data.views[name]
            write_csv(path, view.columns, view.tuples())
        else:
            write_query_csv(path, con.execute(view_query(con, name)))
        paths.append(path)
    return paths


def is_quiet(data: ReportData, changes: Changes) -> bool:
    """Nothing new since the previous report (no run, no change): the report says so
    first and shows the leaderboard as it stands."""
    return changes.compared and not changes.count and not data.figures["new_runs_since_previous"]


def still_open(data: ReportData, changes: Changes) -> dict[str, int]:
    """The zombies and parents left open that earlier reports listed and are still open:
    this report counts them (the first report lists them all)."""
    if not changes.compared:
        return {"zombies": 0, "parents": 0}
    return {
        "zombies": len(data.views["zombie_runs"].rows) - len(changes.new_stuck),
        "parents": len(data.views["parents_left_open"].rows) - len(changes.new_open_parents),
    }


def missing_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    present = {
        name
        for (name,) in con.execute("select table_name from information_schema.tables").fetchall()
    }
    return [name for name in (*VIEWS_USED, "runreport_settings") if name not in present]


def write_report(
    data: ReportData,
    pages: Templates,
    work: Path,
    out: Path,
    links: Links,
    changes: Changes,
    csv_files: list[Path],
) -> ReportResult:
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
        "freshness": data.freshness,
        "children": data.children,
        "dataset_sources": data.dataset_sources,
        "quiet": is_quiet(data, changes),
        "still_open": still_open(data, changes),
        # the views that count runs count per workspace: their tables then name it
        "several_workspaces": len(data.workspaces) > 1,
    }
    names = NameCutter(data.experiment_names)
    texts = {
        name: pages.render(page, context, data.clock, links, names) for name, page in PAGES.items()
    }
    inlined = css_inline.inline(texts[EMAIL_HTML], load_remote_stylesheets=False)
    texts[EMAIL_HTML] = escape_attributes(inlined)
    for name, text in texts.items():
        (work / name).write_text(text, encoding="utf-8")
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
        index_html=out / INDEX_HTML,
        email_html=out / EMAIL_HTML,
        summary_txt=out / SUMMARY_TXT,
        csv_files=[out / path.name for path in csv_files],
        chart_pngs=[out / chart.file for chart in chart_list],
        figures=dict(data.figures),
        changes=saved["changes"],
    )


def draw_charts(data: ReportData, work: Path) -> list[Chart]:
    """The charts of the report (runs by status is a table alone: a chart would repeat it)."""
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
    ]
    return [
        Chart(path.name, title, charts.png_data_uri(path))
        for title, path in drawn
        if path is not None
    ]


def check_out_folder(out: Path) -> None:
    """`out` is replaced whole: refuse a folder that holds anything but an earlier report."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"report folder {out} is a file", "Choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_JSON).is_file():
        dated = (out / "latest").is_symlink()  # the folder `runreport run` dates reports in
        raise ConfigError(
            f"report folder {out} holds files that are not a runreport report, and the "
            "report replaces the whole folder",
            "It holds the dated reports of runreport run: given the same --config and no "
            "--out, report and email write today's dated folder there"
            if dated
            else "Choose a new or empty folder for --out",
        )
