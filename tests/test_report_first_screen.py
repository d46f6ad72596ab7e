"""The first screen a lead sees, on stores built through MLflow's API and extracted and
rendered by the CLI, as the cron job and a lead at a terminal run it:

- no daily noise: a PyCaret store's parents left open are listed in the report where they
  first appear, then only counted; `report.zombie_ignore` covers them; a day with nothing
  new says so first and shows the leaderboard, not tables of zeros;
- one config for every command: `report` and `email` given `run`'s config write today's
  dated folder and compare with the report before it, so a re-send keeps what changed;
- freshness: `data_as_of` and `extract_mode`, "data as of 06:02 UTC" near the top, a
  banner after a failed extract; the mail's subject leads with the most important change
  and its button opens the full report;
- the small things: a run without a name shows its short id once, experiment names cut
  in the middle never look alike, the nav lists every section, a nested search links to
  MLflow's compare-runs page of its children, `report.estimator_from` and
  `report.user_tag`.
"""

from __future__ import annotations

import csv
import email
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import duckdb
import pytest
from mlflow import MlflowClient

from etl.report.render import render_report
from tests.conftest import free_port, log_run, new_store, run_cli
from tests.team_stores import build_pycaret_store, log_pycaret_session
from tests.test_report import Node, full_ids, own_text, parse, table_rows

UI = "https://mlflow.example.com"
PUBLIC = "https://reports.example.com/ml"
DAY_MS = 24 * 3_600_000
# two experiment names that differ only in the middle: cut at either end they look alike
TWINS = (
    "customer-churn-model-A-quarterly-retrain-v2",
    "customer-churn-model-B-quarterly-retrain-v2",
)


def cli_ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = run_cli(*args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def write_config(folder: Path, uri: str, report: str = "") -> Path:
    config = folder / "runreport.toml"
    config.write_text(
        f'[tracking]\nuri = "{uri}"\n\n[warehouse]\npath = "runs.duckdb"\n\n'
        f'[report]\nout = "reports"\n{report}',
        encoding="utf-8",
    )
    return config


def words(node: Node | None) -> str:
    assert node is not None
    return " ".join(node.text().split())


@dataclass
class Rendered:
    """One report folder's files as a person opens them."""

    folder: Path
    saved: dict[str, Any] = field(init=False)
    index: Node = field(init=False)
    email: Node = field(init=False)
    summary: str = field(init=False)

    def __post_init__(self) -> None:
        self.saved = json.loads((self.folder / "report.json").read_text(encoding="utf-8"))
        self.index = parse(self.folder / "index.html")
        self.email = parse(self.folder / "email.html")
        self.summary = (self.folder / "summary.txt").read_text(encoding="utf-8")

    def csv_rows(self, view: str) -> list[dict[str, str]]:
        with (self.folder / f"{view}.csv").open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))


# --- a PyCaret team: three sessions left open, a quiet day, then a fourth session ----------


@dataclass
class PycaretDays:
    run_ids: dict[str, str]
    config: Path
    db: Path
    first: Rendered  # the first report: every parent left open listed
    quiet: Rendered  # the next one, nothing new
    fourth: Rendered  # after a fourth session: one parent newly left open


@pytest.fixture(scope="module")
def pycaret(tmp_path_factory: pytest.TempPathFactory) -> PycaretDays:
    folder = tmp_path_factory.mktemp("pycaret-days")
    store = build_pycaret_store(folder / "store")
    # PyCaret's session runs stay RUNNING: with no wait they are parents left open at once
    config = write_config(
        folder,
        store.uri,
        f'zombie_after_hours = 0\nestimator_from = "run_name"\nmlflow_ui_url = "{UI}"\n',
    )
    out = folder / "report"
    cli_ok("extract", "--config", str(config))

    def report() -> Rendered:
        cli_ok("report", "--config", str(config), "--out", str(out))
        kept = folder / f"report-{len(list(folder.glob('report-*')))}"
        kept.mkdir()
        for path in out.iterdir():
            kept.joinpath(path.name).write_bytes(path.read_bytes())
        return Rendered(kept)

    first, quiet = report(), report()
    accuracy = {"Logistic Regression": 0.6, "Random Forest Classifier": 0.61}
    log_pycaret_session(MlflowClient(store.uri), store, 126, accuracy)
    cli_ok("extract", "--incremental", "--config", str(config))
    return PycaretDays(store.run_ids, config, folder / "runs.duckdb", first, quiet, report())


def test_the_first_report_lists_every_parent_left_open(pycaret: PycaretDays) -> None:
    first = pycaret.first
    sessions = {pycaret.run_ids[f"session-{number}"] for number in (123, 124, 125)}
    assert (first.saved["parents_left_open"], first.saved["running"]) == (3, 3)
    assert first.saved["changes"] is None
    listed = table_rows(first.index, "parents_left_open")
    assert {full_ids(row[0])[0] for row in listed} == sessions
    assert [own_text(row[0]) for row in listed] == [
        "Session Initialized 007b", "Session Initialized 007c", "Session Initialized 007d"
    ]  # fmt: skip
    assert len(table_rows(first.email, "parents_left_open")) == 3
    assert "PARENTS LEFT OPEN (3; later reports list only the new ones)" in first.summary
    card = next(n for n in first.index.walk() if n.attrs.get("data-figure") == "running")
    assert [words(div) for div in card.all("div")[1:]] == [
        "Still running", "3", "of them 3 parents left open"
    ]  # fmt: skip


def test_a_quiet_day_says_so_and_shows_the_leaderboard(pycaret: PycaretDays) -> None:
    quiet = pycaret.quiet
    assert quiet.saved["changes"] == {
        "new_best": [], "best_removed": [], "new_failures": [], "new_stuck": [],
        "new_parents_left_open": [], "alias_moves": [], "pass_rate_drops": [],
    }  # fmt: skip
    assert quiet.saved["new_runs_since_previous"] == 0
    assert quiet.saved["headline"] == "Nothing new since the last report"
    # the mail: one sentence, the state in one line, then the leaderboard; no zeros
    text = words(quiet.email)
    since = quiet.saved["since"][:16].replace("T", " ")
    nothing = (
        f"What changed Nothing new since the previous report ({since} UTC): no new run, best "
        "run, failure, stuck run or parent left open. All history: 12 runs in 2 experiments; "
        "3 running, of them 3 parents left open. Leaderboard "
    )
    assert nothing in text
    assert text.index(nothing) + len(nothing) == text.index(f"Experiment{'Best run'}")
    assert "New runs" not in text and "Runs, all" not in text  # no grid of figures
    assert quiet.email.find_id("parents_left_open") is None
    assert words(quiet.email.find_id("still-open")) == (
        "Still open from earlier reports: 3 parents left open: each listed in the report "
        "where it first appeared, all in parents_left_open.csv."
    )
    # the page: What changed is one line, the leaderboard right under it
    sections = [n for n in quiet.index.all("section")]
    assert [n.attrs["id"] for n in sections[:3]] == ["changes", "leaderboard", "attention"]
    assert sections[0].attrs["class"] == "collapsed changes"
    assert "collapsed" not in sections[1].attrs.get("class", "")
    assert words(sections[2].all("p")[0]) == (
        "No run failed or was killed in the last 7 days; still open from "
        "earlier reports: 3 parents left open (parents_left_open.csv)."
    )
    assert quiet.index.find_id("parents_left_open") is None
    assert len(quiet.csv_rows("parents_left_open")) == 3  # the file has them all
    assert (
        "WHAT CHANGED\nNothing new since the previous report" in quiet.summary
        and "\nAll history: 12 runs in 2 experiments; 3 running, of them 3 parents left open.\n"
        in quiet.summary
    )
    assert quiet.summary.index("All history") < quiet.summary.index("LEADERBOARD")


def test_a_parent_newly_left_open_is_listed_once(pycaret: PycaretDays) -> None:
    fourth = pycaret.fourth
    session = pycaret.run_ids["session-126"]
    assert [row["run_id"] for row in fourth.saved["changes"]["new_parents_left_open"]] == [session]
    assert fourth.saved["parents_left_open"] == 4
    assert fourth.saved["headline"] == (
        "1 parent newly left open; 3 new runs since the last report, 0 failed"
    )
    [row] = table_rows(fourth.index, "new_parents_left_open")
    assert (full_ids(row[0]), own_text(row[0]), row[3].text()) == (
        [session], "Session Initialized 007e", "2"
    )  # fmt: skip
    assert fourth.index.find_id("parents_left_open") is None
    assert words(fourth.index.find_id("attention")).endswith(
        "the runs newly stuck or left open are under What changed; still open from earlier "
        "reports: 3 parents left open (parents_left_open.csv)."
    )
    assert (
        "Parent left open: Session Initialized 007e in pycaret-churn, running although its 2 "
        "child runs ended." in words(fourth.email)
    )
    assert "- PARENT LEFT OPEN Session Initialized 007e  [pycaret-churn]  2 children" in (
        fourth.summary
    )
    assert "Still open from earlier reports: 3 parents left open" in fourth.summary


def test_zombie_ignore_covers_parents_left_open(pycaret: PycaretDays, tmp_path: Path) -> None:
    config = tmp_path / "ignore.toml"
    config.write_text(
        f'[warehouse]\npath = "{pycaret.db}"\n\n'
        '[report]\nzombie_after_hours = 0\nzombie_ignore = ["pycaret-*"]\n',
        encoding="utf-8",
    )
    out = tmp_path / "r"
    cli_ok("report", "--config", str(config), "--out", str(out))
    ignored = Rendered(out)
    assert (ignored.saved["parents_left_open"], ignored.saved["zombies"]) == (0, 0)
    assert ignored.csv_rows("parents_left_open") == []
    assert ignored.index.find_id("parents_left_open") is None


def test_estimator_from_run_name_counts_pycaret_models(pycaret: PycaretDays) -> None:
    counts = {row["estimator_name"]: row["runs"] for row in pycaret.first.csv_rows(
        "runs_per_estimator"
    )}  # fmt: skip
    # the session runs ("Session Initialized ...") are nested parents: no model
    assert counts == {
        "Decision Tree Classifier": "3", "Logistic Regression": "3",
        "Random Forest Classifier": "3",
    }  # fmt: skip
    rows = table_rows(pycaret.first.index, "runs_per_estimator")
    assert sorted((row[0].text(), row[1].text()) for row in rows) == sorted(counts.items())


# --- one config for report, email and run; freshness; the subject ---------------------------


@dataclass
class DatedStore:
    folder: Path
    config: Path
    db: Path
    uri: str
    run_ids: dict[str, str]
    experiment_ids: dict[str, str]
    today: str
    yesterday: str

    @property
    def reports(self) -> Path:
        return self.folder / "reports"


def build_team(folder: Path, two_days_ago: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """A team's store, its runs started two days ago: an experiment ranked on accuracy with
    a nested search, one whose best run has no name (as MLflow before run names left it),
    two whose names differ only in the middle, runs with an owner tag."""
    uri = new_store(folder)
    client = MlflowClient(uri)
    runs: dict[str, str] = {}
    churn = client.create_experiment("churn-model")
    unnamed = client.create_experiment("unnamed-best")
    twins = [client.create_experiment(name) for name in TWINS]
    for number, value in enumerate((0.80, 0.78)):
        runs[f"rf-{number}"] = log_run(
            client, churn, f"rf-{number}", metrics={"accuracy": value},
            tags={"owner": "ana"}, start_time=two_days_ago + number,
        )  # fmt: skip
    runs["grid"] = log_run(client, churn, "grid", start_time=two_days_ago + 10)
    for number in range(3):
        runs[f"child-{number}"] = log_run(
            client, churn, f"child-{number}", metrics={"mean_test_score": 0.7 + number / 100},
            parent=runs["grid"], start_time=two_days_ago + 11 + number, tags={"owner": "bo"},
        )  # fmt: skip
    runs["unnamed"] = log_run(
        client, unnamed, "to-be-unnamed", metrics={"accuracy": 0.5}, start_time=two_days_ago
    )
    for number, experiment in enumerate(twins):
        runs[f"twin-{number}"] = log_run(
            client, experiment, f"twin-{number}", metrics={"accuracy": 0.6},
            start_time=two_days_ago,
        )  # fmt: skip
    path = uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as store:  # a run logged before MLflow named every run
        store.execute("update runs set name = NULL where run_uuid = ?", [runs["unnamed"]])
        store.execute(
            "delete from tags where run_uuid = ? and key = 'mlflow.runName'", [runs["unnamed"]]
        )
    ids = {"churn": churn, "unnamed": unnamed, "twin-0": twins[0], "twin-1": twins[1]}
    return uri, runs, ids


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> DatedStore:
    """Yesterday's report in its dated folder; then a new best, another run and a failure;
    then `runreport report --config` (today's dated folder) and `runreport email --config`
    (today's again, mailed to a file)."""
    folder = tmp_path_factory.mktemp("dated")
    now = datetime.now(timezone.utc)
    uri, runs, ids = build_team(folder / "store", int(now.timestamp() * 1000) - 2 * DAY_MS)
    config = write_config(
        folder,
        uri,
        f'public_url = "{PUBLIC}"\nmlflow_ui_url = "{UI}"\nuser_tag = "owner"\n',
    )
    db = folder / "runs.duckdb"
    cli_ok("extract", "--config", str(config))
    yesterday = now - timedelta(days=1)
    render_report(db, folder / "reports" / yesterday.date().isoformat(), now=yesterday)
    client = MlflowClient(uri)
    runs["rf-best"] = log_run(client, ids["churn"], "rf-best", metrics={"accuracy": 0.9})
    runs["rf-meh"] = log_run(client, ids["churn"], "rf-meh", metrics={"accuracy": 0.7})
    runs["crashed"] = log_run(client, ids["churn"], "crashed", status="FAILED")
    cli_ok("extract", "--incremental", "--config", str(config))
    return DatedStore(
        folder, config, db, uri, runs, ids, now.date().isoformat(), yesterday.date().isoformat()
    )


@pytest.fixture(scope="module")
def today(dated: DatedStore) -> Rendered:
    """`runreport report --config`, then `runreport email --config` on the same day."""
    output = cli_ok("report", "--config", str(dated.config))
    assert output.strip() == f"report: {dated.reports / dated.today / 'index.html'}"
    return Rendered(dated.reports / dated.today)


def test_report_with_the_run_config_writes_todays_dated_folder(
    dated: DatedStore, today: Rendered
) -> None:
    latest = dated.reports / "latest"
    assert latest.is_symlink() and latest.resolve() == today.folder.resolve()
    assert today.saved["since"].startswith(dated.yesterday)  # compared with yesterday's
    assert [row["run_id"] for row in today.saved["changes"]["new_best"]] == [
        dated.run_ids["rf-best"]
    ]
    assert today.saved["new_runs_since_previous"] == 3
    assert today.saved["headline"] == (
        "New best in churn-model; 3 new runs since the last report, 1 failed"
    )
    # --out DIR: that folder, as before
    other = dated.folder / "elsewhere"
    cli_ok("report", "--config", str(dated.config), "--out", str(other))
    assert Rendered(other).saved["changes"] is None  # nothing there to compare with
    assert sorted(p.name for p in dated.reports.iterdir()) == [
        dated.yesterday, dated.today, "latest"
    ]  # fmt: skip


def test_email_with_the_run_config_resends_today_with_what_changed(
    dated: DatedStore, today: Rendered, tmp_path: Path
) -> None:
    eml = tmp_path / "report.eml"
    cli_ok("email", "--config", str(dated.config), "--to", "ops@example.com", "--dry-run", str(eml))
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"] == (
        f"New best in churn-model; 3 new runs since the last report, 1 failed ({dated.today})"
    )
    again = Rendered(dated.reports / dated.today)  # rendered again, still against yesterday's
    assert again.saved["since"] == today.saved["since"]
    assert again.saved["changes"]["new_best"] == today.saved["changes"]["new_best"]
    assert [row["run_id"] for row in again.saved["changes"]["new_failures"]] == [
        dated.run_ids["crashed"]
    ]
    # the button to the full report comes first, before what changed
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    page = html.get_content()
    button = f'href="{PUBLIC}/{dated.today}/index.html"'
    assert 'id="open-report"' in page and page.index(button) < page.index('id="changes"')
    assert words(again.email.find_id("open-report")) == "Open the full report"


def test_the_report_says_how_fresh_its_data_is(dated: DatedStore, today: Rendered) -> None:
    with duckdb.connect(str(dated.db), read_only=True) as con:
        ended, mode = con.execute(
            "select ended_at, mode from extract_log where status = 'ok' "
            "order by ended_at desc limit 1"
        ).fetchone()  # type: ignore[misc]
    ended = ended.astimezone(timezone.utc)
    assert today.saved["data_as_of"] == ended.isoformat(timespec="seconds")
    assert (today.saved["extract_mode"], today.saved["extract_failure"]) == (mode, None)
    shown = f"{ended:%H:%M} UTC (incremental extract)"
    assert words(today.index.find_id("data-as-of")) == f"data as of {shown}"
    assert words(today.email.find_id("data-as-of")) == f"Data as of {shown}"
    assert today.summary.splitlines()[1].startswith(f"Data as of {shown}. What happened")
    assert today.index.find_id("extract-failed") is None


def test_a_failed_extract_is_said_in_a_banner(
    dated: DatedStore, today: Rendered, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    db.write_bytes(dated.db.read_bytes())
    failed = run_cli(
        "extract", "--incremental", "--db", str(db),
        "--tracking-uri", f"http://127.0.0.1:{free_port()}",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "RUNREPORT_TRACKING_TIMEOUT": "10"},
    )  # fmt: skip
    assert failed.exit_code == 1, failed.output
    result = render_report(db, tmp_path / "r", previous=today.folder)
    stale = Rendered(result.out)
    assert stale.saved["data_as_of"] == today.saved["data_as_of"]  # the warehouse is as it was
    failure = stale.saved["extract_failure"]
    assert failure is not None and failure["error"].startswith(
        "cannot reach the tracking server at http://127.0.0.1:"
    )
    assert stale.saved["headline"] == "The last extract failed; nothing new since the last report"
    for page in (stale.index, stale.email):
        banner = words(page.find_id("extract-failed"))
        assert banner.startswith("The last extract failed (") and "cannot reach the" in banner
        assert banner.endswith(f"This report shows the data as of {today.saved['data_as_of'][:10]} "
                               f"{today.saved['data_as_of'][11:16]} UTC.")  # fmt: skip
    assert "\nTHE LAST EXTRACT FAILED (" in stale.summary


# --- the small things ------------------------------------------------------------------------


def test_a_run_without_a_name_shows_its_short_id_once(dated: DatedStore, today: Rendered) -> None:
    run_id = dated.run_ids["unnamed"]
    [row] = [r for r in table_rows(today.index, "leaderboard") if r[0].text() == "unnamed-best"]
    cell = row[3]
    assert (own_text(cell), cell.text(), full_ids(cell)) == ("", run_id[:8], [run_id])
    assert f"- unnamed-best: accuracy = 0.5 ({run_id[:8]})" in today.summary
    assert "()" not in today.summary
    [mailed] = [r for r in table_rows(today.email, "leaderboard") if "unnamed" in r[0].text()]
    assert mailed[1].text() == run_id[:8]


def test_experiment_names_are_cut_in_the_middle_and_never_alike(today: Rendered) -> None:
    shown = {}
    for row in table_rows(today.email, "leaderboard"):
        for span in row[0].all("span"):
            if span.attrs.get("title") in TWINS:
                shown[span.attrs["title"]] = span.text()
    first, second = (shown[name] for name in TWINS)
    assert first != second and len(first) <= 30 and len(second) <= 30
    for name, cut in zip(TWINS, (first, second), strict=True):
        head, tail = cut.split("…")
        assert name.startswith(head) and name.endswith(tail), cut
    assert first.startswith("customer-churn-model-A") and second.startswith(
        "customer-churn-model-B"
    )


def test_the_nav_lists_every_section_of_the_page(today: Rendered) -> None:
    nav = today.index.all("nav")[0]
    sections = [n.attrs["id"] for n in today.index.all("section")]
    assert [a.attrs["href"] for a in nav.all("a")] == [f"#{ident}" for ident in sections]
    assert {"learning-curves", "models", "datasets"} <= set(sections)


def test_a_nested_search_links_to_its_children_compared(dated: DatedStore, today: Rendered) -> None:
    [row] = table_rows(today.index, "nested_searches")
    assert full_ids(row[0]) == [dated.run_ids["grid"]]
    [link] = row[3].all("a")
    url = urlsplit(link.attrs["href"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{UI}/"
    route, _, query = url.fragment.partition("?")
    assert route == "/compare-runs"
    asked = {key: json.loads(unquote(value[0])) for key, value in parse_qs(query).items()}
    children = [dated.run_ids[f"child-{number}"] for number in range(3)]
    assert asked == {"runs": children, "experiments": [dated.experiment_ids["churn"]]}
    assert link.text() == "3"


def test_user_tag_counts_runs_by_owner(today: Rendered) -> None:
    users = {row["user_id"]: int(row["runs"]) for row in today.csv_rows("runs_per_user")}
    assert (users["ana"], users["bo"]) == (2, 3)
    assert sum(users.values()) == 12  # the other runs count under MLflow's user


def test_runs_by_status_is_a_table_not_a_chart_too(today: Rendered) -> None:
    images = [img.attrs["alt"] for img in today.index.all("img")]
    assert "Runs by status" not in images and not (today.folder / "runs_by_status.png").exists()
    assert table_rows(today.index, "runs_by_status")
