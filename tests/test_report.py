"""`runreport report`: the HTML report, email HTML, plain text, report.json and CSV files,
rendered from real warehouses and checked against the views queried with DuckDB."""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from etl.errors import ConfigError
from etl.report.csv_export import cell, safe_text
from etl.report.format import metric
from etl.report.render import ReportResult, render_report
from etl.values import to_json, to_text
from etl.warehouse.settings import ViewSettings
from etl.warehouse.views import create_views
from tests.conftest import StoreFacts, log_run, new_store, run_cli

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SCRIPT_NAME = "<script>alert('x')</script>"
HOSTILE_EXPERIMENT = 'churn <img src=x onerror="alert(1)"> model'
FORMULA_NAMES = {
    '=HYPERLINK("http://evil.example","x")': '\'=HYPERLINK("http://evil.example","x")',
    "+SUM(A1:A2)": "'+SUM(A1:A2)",
    "-2+3": "'-2+3",
    "@cmd": "'@cmd",
}
LONG_NAME = "long-" + "n" * 145  # 150 characters
FAILURES_IN_WINDOW = 30  # more than a screenful (25)


# ---------------------------------------------------------------- parsing the HTML


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_id(self, ident: str) -> Node | None:
        return next((n for n in self.walk() if n.attrs.get("id") == ident), None)

    def all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, [])
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, [])
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def parse(path: Path) -> Node:
    return parse_html(path.read_text(encoding="utf-8"))


def table_rows(doc: Node, ident: str) -> list[list[Node]]:
    table = doc.find_id(ident)
    assert table is not None, f"no table {ident}"
    rows = [row for row in table.all("tr") if row.all("td")]
    return [row.all("td") for row in rows]


def full_ids(cell_node: Node) -> list[str]:
    """Run ids are shown shortened, the whole id in the title of a <code>."""
    return [code.attrs["title"] for code in cell_node.all("code")]


def own_text(node: Node) -> str:
    """A cell's text without its short ids (<code>) and notes (<div>): a run's name, a
    metric key."""
    parts = [
        child if isinstance(child, str) else own_text(child)
        for child in node.children
        if isinstance(child, str) or child.tag not in ("code", "div")
    ]
    return "".join(parts).strip()


def figure(doc: Node, name: str) -> str:
    card = next(n for n in doc.walk() if n.attrs.get("data-figure") == name)
    value = next(n for n in card.walk() if n.attrs.get("class") == "value")
    return value.text().strip()


def more_note(doc: Node, section: str) -> str | None:
    node = doc.find_id(section)
    assert node is not None
    notes = [n.text() for n in node.walk() if n.attrs.get("class") == "more"]
    return notes[0] if notes else None


# ---------------------------------------------------------------- fixture stores


@dataclass
class Rendered:
    db: Path
    out: Path
    result: ReportResult
    now: datetime
    facts: StoreFacts

    def doc(self, name: str = "index.html") -> Node:
        return parse(self.out / name)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            con.execute("set TimeZone = 'UTC'")
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def window_start(self) -> datetime:
        return datetime.fromisoformat(self.result.figures["window_start"])


def extract(uri: str, db: Path) -> None:
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db))
    assert result.exit_code == 0, result.output


def build_team_store(folder: Path, now_ms: int) -> StoreFacts:
    """A team's week: hostile names, formula-like names, a long name, a nested search, a
    zombie, duplicates, more failures than a screenful, and runs older than the window."""
    uri = new_store(folder)
    client = MlflowClient(uri)
    facts = StoreFacts(uri)
    exp = client.create_experiment(HOSTILE_EXPERIMENT)
    search_exp = client.create_experiment(
        "search",
        tags={
            "mlflow.experiment.primaryMetric.name": "r2",
            "mlflow.experiment.primaryMetric.greaterIsBetter": "True",
        },
    )
    facts.experiment_ids.update(hostile=exp, search=search_exp)
    runs = facts.run_ids

    def at(hours_ago: float) -> int:
        return now_ms - int(hours_ago * HOUR_MS)

    forest = {"estimator_name": "RandomForestRegressor", "mlflow.source.type": "LOCAL"}
    linear = {"estimator_name": "LinearRegression", "mlflow.source.type": "NOTEBOOK"}
    runs["script"] = log_run(
        client, exp, SCRIPT_NAME, metrics={"mse": -1.5}, tags=forest, start_time=at(5)
    )
    for number, name in enumerate(FORMULA_NAMES):
        runs[name] = log_run(
            client, exp, name, metrics={"mse": 2.0 + number}, tags=linear, start_time=at(6)
        )
    runs["long"] = log_run(client, exp, LONG_NAME, metrics={"mse": math.inf}, start_time=at(7))
    runs["dup1"] = log_run(client, exp, "dup", metrics={"mse": 9.0}, start_time=at(30))
    runs["dup2"] = log_run(client, exp, "dup", metrics={"mse": 8.0}, start_time=at(31))
    runs["zombie"] = log_run(client, exp, "zombie", status="RUNNING", start_time=at(72))
    runs["running"] = log_run(client, exp, "fresh", status="RUNNING", start_time=at(1))
    runs["killed"] = log_run(client, exp, "killed", status="KILLED", start_time=at(2))
    for number in range(FAILURES_IN_WINDOW):
        runs[f"fail{number}"] = log_run(
            client, exp, f"fail-{number:02d}", status="FAILED", start_time=at(8 + number)
        )
    for number in range(3):
        runs[f"old{number}"] = log_run(
            client, exp, f"old-{number}", metrics={"mse": 0.1}, start_time=at(24 * 40 + number)
        )
    runs["old_failed"] = log_run(client, exp, "old-failed", status="FAILED", start_time=at(24 * 45))
    runs["grid"] = log_run(client, search_exp, "grid", start_time=at(3))
    for number, r2 in enumerate([0.5, 0.8, math.nan]):
        runs[f"child{number}"] = log_run(
            client,
            search_exp,
            f"child-{number}",
            metrics={"r2": r2},
            tags={"estimator_name": "Ridge"},
            parent=runs["grid"],
            start_time=at(3) + number * 1000,
        )
    return facts


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("team")
    now = datetime.now(timezone.utc)
    facts = build_team_store(folder / "store", int(now.timestamp() * 1000))
    db = folder / "runs.duckdb"
    extract(facts.uri, db)
    out = folder / "report"
    result = render_report(db, out, now=now)
    return Rendered(db, out, result, now, facts)


@pytest.fixture(scope="module")
def rich(rich_store: StoreFacts, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("rich-report")
    db = folder / "runs.duckdb"
    extract(rich_store.uri, db)
    now = datetime.now(timezone.utc)
    result = render_report(db, folder / "report", now=now)
    return Rendered(db, folder / "report", result, now, rich_store)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("empty")
    uri = new_store(folder / "store")
    db = folder / "runs.duckdb"
    extract(uri, db)
    now = datetime.now(timezone.utc)
    result = render_report(db, folder / "report", now=now)
    return Rendered(db, folder / "report", result, now, StoreFacts(uri))


ACTIVE = "lifecycle_stage = 'active' and experiment_lifecycle_stage = 'active'"


def expected_figures(r: Rendered) -> dict[str, int]:
    start = r.window_start()

    def one(sql: str, params: list[Any] | None = None) -> int:
        return r.query(sql, params)[0][0]

    return {
        "experiments": one("select count(*) from experiments where lifecycle_stage = 'active'"),
        "runs": one(f"select count(*) from run_overview where {ACTIVE}"),
        "new_runs": one(
            f"select count(*) from run_overview where {ACTIVE} and start_time >= ?", [start]
        ),
        "failed": one(
            f"select count(*) from run_overview where {ACTIVE} and status = 'FAILED' "
            "and start_time >= ?",
            [start],
        ),
        "running": one(f"select count(*) from run_overview where {ACTIVE} and status = 'RUNNING'"),
        "zombies": one("select count(*) from zombie_runs"),
    }


# ---------------------------------------------------------------- the figures


def test_headline_figures_match_the_warehouse(team: Rendered) -> None:
    expected = expected_figures(team)
    # the store's own facts, so the oracle query cannot be wrong in the same way
    assert expected == {
        "experiments": 3,  # Default, the hostile one, search
        "runs": len(team.facts.run_ids),
        "new_runs": len(team.facts.run_ids) - 4,  # three old runs and the old failure
        "failed": FAILURES_IN_WINDOW,
        "running": 2,
        "zombies": 1,
    }
    doc = team.doc()
    for name, value in expected.items():
        assert figure(doc, name) == f"{value:,}", name
    saved = json.loads((team.out / "report.json").read_text())
    assert {k: saved[k] for k in expected} == expected
    assert {k: saved[k] for k in team.result.figures} == team.result.figures
    assert (saved["since"], saved["changes"]) == (None, None)  # the first report here
    assert saved["date"] == team.now.date().isoformat()
    assert saved["window_days"] == 7
    assert team.window_start() == (team.now - timedelta(days=7)).replace(microsecond=0)


def test_failed_runs_table_lists_the_window_newest_first_cut_at_a_screenful(team: Rendered):
    rows = table_rows(team.doc(), "failed_runs")
    expected = team.query(
        "select run_id, status, run_name from failed_runs where start_time >= ? "
        "order by start_time desc, run_id",
        [team.window_start()],
    )
    assert len(expected) == FAILURES_IN_WINDOW + 1  # and the killed run
    assert [(full_ids(r[1])[0], r[0].text(), own_text(r[1])) for r in rows] == [
        (run_id, status.lower(), name) for run_id, status, name in expected[:25]
    ]
    assert more_note(team.doc(), "attention") == "and 6 more: see failed_runs.csv"


def test_leaderboard_and_nested_search_match_the_views(team: Rendered) -> None:
    doc = team.doc()
    board = {r[0].text(): r for r in table_rows(doc, "leaderboard")}
    expected = team.query("select experiment_name, run_id, value, runs_compared from leaderboard")
    assert set(board) == {name for name, *_ in expected}
    for name, run_id, value, compared in expected:
        assert full_ids(board[name][3]) == [run_id]
        assert board[name][2].text() == metric(value)
        assert board[name][6].text() == str(compared)
    # by hand: r2 is greater-is-better, so child-1 (0.8) wins; the NaN child never does
    assert board["search"][2].text() == "0.8"
    assert own_text(board["search"][3]) == "child-1"
    assert own_text(board["search"][1]) == "r2 ↑"
    assert board[HOSTILE_EXPERIMENT][2].text() == "-1.5"  # mse: lower is better

    searches = table_rows(doc, "nested_searches")
    assert len(searches) == 1
    parent, _, _, children, key, best, value = searches[0]
    assert (own_text(parent), children.text(), key.text(), value.text()) == (
        "grid", "3", "r2", "0.8"
    )  # fmt: skip
    assert full_ids(parent) == [team.facts.run_ids["grid"]]
    assert full_ids(best) == [team.facts.run_ids["child1"]]


def test_recent_runs_show_the_article_columns(team: Rendered) -> None:
    rows = table_rows(team.doc(), "recent_runs")
    expected = team.query(
        "select run_id, experiment_name, run_name, status, metric_key, metric_value, "
        "source_type, user_id, estimator_name from recent_runs where start_time >= ? "
        "order by start_time desc, run_id limit 25",
        [team.window_start()],
    )
    assert len(rows) == 25
    shown = [
        (
            full_ids(r[0])[0],
            r[1].text(),
            own_text(r[0]),
            r[2].text(),
            r[4].text(),
            r[5].text(),
            r[6].text(),
            r[7].text(),
            r[8].text(),
        )
        for r in rows
    ]
    assert shown == [
        (
            run_id,
            experiment if len(experiment) <= 80 else experiment[:79] + "…",
            name if len(name) <= 80 else name[:79] + "…",
            status.lower(),
            key or "",
            metric(value),
            source or "",
            user or "",
            estimator or "",
        )
        for run_id, experiment, name, status, key, value, source, user, estimator in expected
    ]
    by_id = {full_ids(r[0])[0]: r for r in rows}
    child = by_id[team.facts.run_ids["child0"]]
    assert full_ids(child[9]) == [team.facts.run_ids["grid"]]  # the root run
    assert by_id[team.facts.run_ids["long"]][5].text() == "∞"
    assert more_note(team.doc(), "recent") == (
        f"and {len(team.facts.run_ids) - 4 - 25} more: see recent_runs.csv"
    )


def test_estimators_zombies_and_duplicates(team: Rendered) -> None:
    doc = team.doc()
    estimators = [(r[0].text(), r[1].text()) for r in table_rows(doc, "runs_per_estimator")]
    assert estimators == [
        (name, str(runs))
        for name, runs in team.query("select estimator_name, runs from runs_per_estimator")
    ]
    assert estimators == [("LinearRegression", "4"), ("Ridge", "3"), ("RandomForestRegressor", "1")]
    zombies = table_rows(doc, "zombie_runs")
    assert [(own_text(r[0]), full_ids(r[0])) for r in zombies] == [
        ("zombie", [team.facts.run_ids["zombie"]])
    ]
    assert zombies[0][4].text() == "3.0 d"  # 72 hours
    dups = [(r[1].text(), r[2].text()) for r in table_rows(doc, "duplicate_run_names")]
    assert dups == [("dup", "2")]


def test_runs_per_day_covers_every_day_of_the_window(team: Rendered) -> None:
    rows = table_rows(team.doc(), "runs_per_day")
    first = team.window_start().date()
    days = [team.now.date() - timedelta(days=n) for n in range((team.now.date() - first).days + 1)]
    counted = dict(team.query("select start_date, runs from runs_per_day"))
    assert [(r[0].text(), r[1].text()) for r in rows] == [
        (f"{day:%a %Y-%m-%d}", str(counted.get(day, 0))) for day in days
    ]


# ---------------------------------------------------------------- hostile content


def test_hostile_names_show_as_text(team: Rendered) -> None:
    for page in ("index.html", "email.html"):
        raw = (team.out / page).read_text()
        assert "<script" not in raw.lower(), page
        # css-inline re-serialises email.html: quotes in text stay bare, the brackets not;
        # email.html cuts the experiment's name in the middle
        assert "&lt;script&gt;alert(" in raw and "churn &lt;img src=" in raw, page
        doc = parse(team.out / page)
        assert not doc.all("script")
        assert not [n for n in doc.walk() if any(a.startswith("on") for a in n.attrs)], page
        assert SCRIPT_NAME in doc.text()
        titles = {n.attrs.get("title") for n in doc.walk()}
        # email.html cuts experiment names at 30 characters, the whole name in the title
        assert HOSTILE_EXPERIMENT in doc.text() or HOSTILE_EXPERIMENT in titles, page
    assert SCRIPT_NAME in (team.out / "summary.txt").read_text()


def test_no_external_resource_is_referenced(team: Rendered) -> None:
    for page, image_prefix in (("index.html", "data:image/png;base64,"), ("email.html", "cid:")):
        doc = parse(team.out / page)
        assert not doc.all("script") and not doc.all("link") and not doc.all("iframe")
        images = doc.all("img")
        assert images, page
        assert all(img.attrs["src"].startswith(image_prefix) for img in images), page
        for node in doc.walk():
            for name in ("src", "href", "srcset", "action", "background"):
                value = node.attrs.get(name, "")
                assert not value.lower().startswith(("http:", "https:", "//")), (page, value)
            if name := node.attrs.get("href"):
                assert name.startswith("#") or (team.out / name).is_file(), (page, name)
        styles = " ".join(s.text() for s in doc.all("style")) + " ".join(
            n.attrs.get("style", "") for n in doc.walk()
        )
        assert "@import" not in styles and "url(" not in styles, page


def test_long_values_are_cut_in_html_and_whole_in_csv(team: Rendered) -> None:
    rows = table_rows(team.doc(), "recent_runs")
    cell_node = next(r[0] for r in rows if full_ids(r[0]) == [team.facts.run_ids["long"]])
    span = cell_node.all("span")[0]
    assert span.attrs["title"] == LONG_NAME
    assert own_text(cell_node) == LONG_NAME[:79] + "…"
    with (team.out / "recent_runs.csv").open(encoding="utf-8", newline="") as handle:
        names = [row["run_name"] for row in csv.DictReader(handle)]
    assert LONG_NAME in names


def test_nan_and_infinite_metrics_read_as_words(rich: Rendered) -> None:
    summary = {r[0].text(): r[6].text() for r in table_rows(rich.doc(), "metric_summary")}
    assert summary == {"loss": "0.2", "mse": "3.5", "nan": "NaN", "ninf": "−∞", "pinf": "∞"}


# ---------------------------------------------------------------- CSV files


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_one_csv_per_view_with_every_row(team: Rendered) -> None:
    assert sorted(p.name for p in team.out.glob("*.csv")) == sorted(
        p.name for p in team.result.csv_files
    )
    assert len(team.result.csv_files) == 25  # VIEWS_USED, one file each
    for path in team.result.csv_files:
        view = path.stem
        columns = [name for name, *_ in team.query(f"describe {view}")]
        rows = read_csv(path)
        assert rows[0] == columns, view
        assert len(rows) - 1 == team.query(f"select count(*) from {view}")[0][0], view
    rows = read_csv(team.out / "failed_runs.csv")
    assert len(rows) - 1 == FAILURES_IN_WINDOW + 2  # the killed run and the old failure


def test_csv_cells_are_never_formulas_and_numbers_stay_numbers(team: Rendered) -> None:
    with (team.out / "recent_runs.csv").open(encoding="utf-8", newline="") as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle)}
    for name, written in FORMULA_NAMES.items():
        assert rows[team.facts.run_ids[name]]["run_name"] == written
    script = rows[team.facts.run_ids["script"]]
    assert script["run_name"] == SCRIPT_NAME
    assert script["metric_value"] == "-1.5"
    assert float(script["metric_value"]) == -1.5
    assert rows[team.facts.run_ids["long"]]["metric_value"] == "Infinity"
    assert rows[team.facts.run_ids["child2"]]["metric_value"] == "NaN"
    assert rows[team.facts.run_ids["child2"]]["start_time"].endswith("+00:00")


@pytest.mark.pure
@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-1.5", "-1.5"),  # a number in text cannot run
        ("+3e5", "+3e5"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_safe_text(value: str, written: str) -> None:
    assert safe_text(value) == written


@pytest.mark.pure
def test_csv_cell_types() -> None:
    assert cell(-1.5) == "-1.5"
    assert cell(math.nan) == "NaN"
    assert cell(-math.inf) == "-Infinity"  # one spelling with `runreport sql` (etl/values.py)
    assert cell(1.7976931348623157e308) == "Infinity"  # MLflow's stand-in for +inf
    assert cell(3) == 3
    assert cell(None) == ""
    assert cell(True) == "true"
    assert cell(date(2026, 1, 2)) == "2026-01-02"


@pytest.mark.pure
@pytest.mark.parametrize(
    ("value", "csv_text", "json_value", "html_text"),
    [
        (math.nan, "NaN", "NaN", "NaN"),
        (math.inf, "Infinity", "Infinity", "∞"),
        (-math.inf, "-Infinity", "-Infinity", "−∞"),
        (1.7976931348623157e308, "Infinity", "Infinity", "∞"),  # MLflow's stand-in
        (-1.7976931348623157e308, "-Infinity", "-Infinity", "−∞"),
        (0.1 + 0.2, "0.30000000000000004", 0.30000000000000004, "0.3"),
        (None, "", None, ""),
        (True, "true", True, "true"),
        (3, "3", 3, "3"),
        (datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), "2026-01-02T03:04:00+00:00",
         "2026-01-02T03:04:00+00:00", "2026-01-02T03:04:00+00:00"),
        ([1.5, math.nan], '[1.5, "NaN"]', [1.5, "NaN"], '[1.5, "NaN"]'),
    ],
)  # fmt: skip
def test_one_rule_turns_values_into_text(
    value: object, csv_text: str, json_value: object, html_text: str
) -> None:
    assert to_text(value, "csv") == csv_text
    assert to_json(value) == json_value
    assert to_text(value, "html") == html_text
    json.dumps(to_json(value), allow_nan=False)  # always valid JSON


# ---------------------------------------------------------------- email


def test_email_html_is_inlined_with_cid_images_beside_it(team: Rendered) -> None:
    raw = (team.out / "email.html").read_text()
    doc = parse(team.out / "email.html")
    assert not doc.all("style")
    styled = [n for n in doc.walk() if n.attrs.get("style")]
    assert len(styled) > 20
    badge = next(n for n in doc.walk() if "badge-failed" in n.attrs.get("class", ""))
    assert "background" in badge.attrs["style"]
    containers = [t for t in doc.all("table") if t.attrs.get("width") == "600"]
    assert len(containers) == 1
    cids = [img.attrs["src"].removeprefix("cid:") for img in doc.all("img")]
    assert cids == ["runs_per_day.png", "runs_per_estimator.png"]
    for name in cids:
        assert (team.out / name).read_bytes().startswith(b"\x89PNG")
        assert team.out / name in team.result.chart_pngs
    assert "cid:" in raw
    rows = table_rows(doc, "failed_runs")
    assert len(rows) == 10
    assert "and 21 more: see failed_runs.csv" in doc.text()


def test_summary_text_carries_the_figures(team: Rendered) -> None:
    text = (team.out / "summary.txt").read_text()
    figures = team.result.figures
    assert f"New runs:        {figures['new_runs']:>8,}" in text
    assert f"Failed:          {figures['failed']:>8,}" in text
    assert "FAILED AND KILLED IN THE LAST 7 DAYS (31)" in text
    assert "... and 21 more: see failed_runs.csv" in text


# ---------------------------------------------------------------- the window


def test_days_and_since_choose_the_window(team: Rendered, tmp_path: Path) -> None:
    three = render_report(team.db, tmp_path / "three", days=3, now=team.now)
    start = team.now - timedelta(days=3)
    assert three.figures["window_start"] == start.isoformat(timespec="seconds")
    assert (
        three.figures["new_runs"]
        == team.query(
            f"select count(*) from run_overview where {ACTIVE} and start_time >= ?", [start]
        )[0][0]
    )
    # fail-00 .. fail-29 started 8 to 37 hours ago, all inside three days
    assert three.figures["failed"] == FAILURES_IN_WINDOW

    since_day = (team.now - timedelta(days=41)).date()
    since = render_report(team.db, tmp_path / "since", since=since_day, now=team.now)
    midnight = datetime(since_day.year, since_day.month, since_day.day, tzinfo=timezone.utc)
    assert since.figures["window_start"] == midnight.isoformat(timespec="seconds")
    assert since.figures["window_days"] == 42
    expected_new = team.query(
        f"select count(*) from run_overview where {ACTIVE} and start_time >= ?", [midnight]
    )[0][0]
    assert since.figures["new_runs"] == expected_new
    old_in = sum(1 for n in range(3) if team.now - timedelta(hours=24 * 40 + n) >= midnight)
    assert expected_new == len(team.facts.run_ids) - 4 + old_in
    doc = parse(since.index_html)
    assert figure(doc, "new_runs") == str(expected_new)
    # 42 days are more than a screenful: the table lists the days with runs, newest first
    with_runs = team.query("select start_date from runs_per_day where start_date >= ?", [since_day])
    shown = [r[0].text() for r in table_rows(doc, "runs_per_day")]
    assert shown == [f"{day:%a %Y-%m-%d}" for (day,) in sorted(with_runs, reverse=True)]
    assert more_note(doc, "activity") is None


def test_times_show_the_settings_time_zone(team: Rendered, tmp_path: Path) -> None:
    db = tmp_path / "ny.duckdb"
    shutil.copy(team.db, db)
    con = duckdb.connect(str(db))
    create_views(con, ViewSettings(timezone="America/New_York"))
    con.close()
    now = datetime(2026, 1, 15, 3, 30, tzinfo=timezone.utc)  # still Jan 14 in New York
    result = render_report(db, tmp_path / "ny", since=date(2026, 1, 1), now=now)
    assert result.figures["date"] == "2026-01-14"
    assert result.figures["window_start"] == "2026-01-01T05:00:00+00:00"
    text = result.summary_txt.read_text()
    assert "since 2026-01-01 00:00 EST" in text
    assert "Times in America/New_York" in text


# ---------------------------------------------------------------- empty and broken


def test_empty_warehouse_renders_and_says_so(empty: Rendered) -> None:
    doc = empty.doc()
    assert empty.result.figures["runs"] == 0
    assert figure(doc, "runs") == "0"
    assert figure(doc, "experiments") == "1"  # MLflow's Default experiment
    banner = doc.find_id("no-runs")
    assert banner is not None and "no runs" in banner.text()
    # every section with nothing to show is one line: a title and a sentence
    collapsed = [n for n in doc.all("section") if "collapsed" in n.attrs.get("class", "").split()]
    assert [n.attrs["id"] for n in collapsed] == [
        "changes", "leaderboard", "attention", "trends", "activity", "learning-curves", "models",
        "datasets", "searches", "estimators", "recent", "duplicates", "people",
    ]  # fmt: skip
    assert all(len(n.all("p")) == 1 and not n.all("table") for n in collapsed)
    assert empty.result.chart_pngs == []
    assert "There are no runs in the warehouse yet" in empty.result.summary_txt.read_text()
    assert "There are no runs in the warehouse yet" in parse(empty.result.email_html).text()
    for path in empty.result.csv_files:
        assert len(read_csv(path)) == 1, path.name  # the header alone


@pytest.mark.pure
def test_missing_warehouse_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        render_report(tmp_path / "nowhere.duckdb", tmp_path / "out")
    line = caught.value.one_line()
    assert str(tmp_path / "nowhere.duckdb") in line and "runreport extract" in line
    assert not (tmp_path / "out").exists()


def test_cli_report_and_its_errors(team: Rendered, tmp_path: Path) -> None:
    result = run_cli("report", "--db", str(team.db), "--out", str(tmp_path / "cli"), "--days", "2")
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "cli" / "index.html") in result.output
    saved = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert saved["window_days"] == 2
    missing = run_cli("report", "--db", str(tmp_path / "none.duckdb"))
    assert missing.exit_code == 2
    assert "runreport extract" in missing.output


def write_template(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_broken_template_names_the_file_and_line(team: Rendered, tmp_path: Path) -> None:
    mine = write_template(tmp_path / "t", "index.html.j2", "line one\nline two\n{% if %}\n")
    with pytest.raises(ConfigError) as caught:
        render_report(team.db, tmp_path / "out", templates=mine)
    line = caught.value.one_line()
    assert "index.html.j2" in line and "line 3" in line

    missing = write_template(tmp_path / "m", "index.html.j2", '{% extends "mine.html.j2" %}')
    with pytest.raises(ConfigError, match=r"mine\.html\.j2 not found"):
        render_report(team.db, tmp_path / "out", templates=missing)

    with pytest.raises(ConfigError, match="templates folder"):
        render_report(team.db, tmp_path / "out", templates=tmp_path / "no-such-folder")
    assert not (tmp_path / "out").exists()


def test_own_template_restyles_one_page(team: Rendered, tmp_path: Path) -> None:
    mine = write_template(
        tmp_path / "t",
        "summary.txt.j2",
        "{{ figures.new_runs }} new, {{ figures.failed }} failed\n",
    )
    result = render_report(team.db, tmp_path / "out", templates=mine, now=team.now)
    figures = result.figures
    assert (
        result.summary_txt.read_text() == f"{figures['new_runs']} new, {figures['failed']} failed\n"
    )
    assert figure(parse(result.index_html), "runs") == str(figures["runs"])  # the default


def test_failed_render_leaves_the_previous_report_whole(team: Rendered, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    render_report(team.db, out, now=team.now)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # an undefined name fails only while rendering, after the CSVs and charts are written
    broken = write_template(tmp_path / "t", "email.html.j2", "ok\n{{ no_such_name.value }}\n")
    with pytest.raises(ConfigError) as caught:
        render_report(team.db, out, templates=broken, now=team.now)
    assert "email.html.j2, line 2" in caught.value.one_line()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rerender_replaces_the_folder(team: Rendered, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    render_report(team.db, out, now=team.now)
    (out / "stale.csv").write_text("old")
    render_report(team.db, out, now=team.now)
    assert not (out / "stale.csv").exists()
    assert (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]


def test_refuses_to_replace_a_folder_that_is_not_a_report(team: Rendered, tmp_path: Path):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a runreport report"):
        render_report(team.db, out)
    assert (out / "thesis.tex").read_text() == "precious"


def test_nested_and_failed_runs_of_the_rich_store(rich: Rendered) -> None:
    doc = rich.doc()
    searches = [
        (full_ids(r[0])[0], own_text(r[0]), r[3].text()) for r in table_rows(doc, "nested_searches")
    ]
    expected = rich.query("select parent_run_id, parent_run_name, child_count from nested_searches")
    assert searches == [(run_id, name, str(children)) for run_id, name, children in expected]
    assert sorted(name for _, name, _ in searches) == ["child", "root"]
    failed = [(r[0].text(), own_text(r[1])) for r in table_rows(doc, "failed_runs")]
    assert failed == [("failed", "failed")]
    assert figure(doc, "running") == "1" and figure(doc, "failed") == "1"


@pytest.mark.pure
def test_warehouse_without_views_asks_for_an_extract(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table runs (run_id varchar)")
    con.execute("create table extract_log (extract_id integer)")
    con.close()
    with pytest.raises(ConfigError, match="lacks the report views") as caught:
        render_report(db, tmp_path / "out")
    assert f"runreport extract --db {db}" in caught.value.one_line()
