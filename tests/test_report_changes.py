"""What changed since the previous report, and where the report links to: two reports
around a change logged through MLflow and extracted incrementally by the CLI, a third
with no change; every run id links to the MLflow UI; the report folder follows the umask
and a kill between its renames never leaves no report."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from etl.report.links import Links, ui_from_tracking_uri
from etl.report.render import render_report
from etl.warehouse.atomic import OLD_MARK
from tests.conftest import StoreFacts, log_run, new_store, run_cli, unstamped
from tests.test_report import own_text, parse_html, table_rows

UI = "http://mlflow.example.com:5000"
RUN_LINK = re.compile(re.escape(UI) + r"/#/experiments/([^/]+)/runs/([0-9a-f]{32})")


@dataclass
class Story:
    """A store, its warehouse and the three report.json files around one change."""

    facts: StoreFacts
    db: Path
    out: Path
    first: dict[str, Any]
    second: dict[str, Any]
    third: dict[str, Any]
    second_html: dict[str, str]


def cli_ok(*args: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output


def report(db: Path, out: Path) -> dict[str, Any]:
    cli_ok("report", "--db", str(db), "--out", str(out), "--ui-url", UI)
    return json.loads((out / "report.json").read_text())


def build_store(folder: Path) -> StoreFacts:
    uri = new_store(folder)
    client = MlflowClient(uri)
    facts = StoreFacts(uri)
    exp = facts.experiment_ids
    exp["cifar"] = client.create_experiment("cifar")
    exp["tabular"] = client.create_experiment("tabular")
    runs = facts.run_ids
    runs["good"] = log_run(client, exp["cifar"], "good", metrics={"accuracy": 0.8})
    runs["meh"] = log_run(client, exp["cifar"], "meh", metrics={"accuracy": 0.7})
    runs["old_failure"] = log_run(client, exp["tabular"], "old-failure", status="FAILED")
    runs["ridge"] = log_run(client, exp["tabular"], "ridge", metrics={"rmse": 2.0})
    return facts


def log_the_change(facts: StoreFacts) -> None:
    client = MlflowClient(facts.uri)
    exp, runs = facts.experiment_ids, facts.run_ids
    runs["better"] = log_run(client, exp["cifar"], "better", metrics={"accuracy": 0.9})
    runs["worse"] = log_run(client, exp["cifar"], "worse", metrics={"accuracy": 0.75})
    runs["new_failure"] = log_run(client, exp["tabular"], "crashed", status="FAILED")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    folder = tmp_path_factory.mktemp("changes")
    facts = build_store(folder / "store")
    db, out = folder / "runs.duckdb", folder / "reports"
    cli_ok("extract", "--tracking-uri", facts.uri, "--db", str(db))
    first = report(db, out)
    log_the_change(facts)
    cli_ok("extract", "--incremental", "--tracking-uri", facts.uri, "--db", str(db))
    second = report(db, out)
    html = {name: (out / name).read_text() for name in ("index.html", "email.html", "summary.txt")}
    shutil.copytree(out, folder / "second")
    third = report(db, out)
    return Story(facts, db, out, first, second, third, html)


def test_the_first_report_compares_with_nothing_and_says_so(story: Story) -> None:
    assert (story.first["since"], story.first["changes"]) == (None, None)
    assert story.first["state"]["failed_run_ids"] == [story.facts.run_ids["old_failure"]]


def test_changes_name_exactly_the_new_best_and_the_new_failure(story: Story) -> None:
    exp, runs = story.facts.experiment_ids, story.facts.run_ids
    changes = story.second["changes"]
    assert story.second["since"] == story.first["generated_at"]
    assert [
        {key: row[key] for key in ("experiment_id", "experiment_name", "run_id", "metric")}
        | {"value": row["value"], "previous": (row["previous_value"], row["previous_run_id"])}
        for row in changes["new_best"]
    ] == [
        {
            "experiment_id": exp["cifar"],
            "experiment_name": "cifar",
            "run_id": runs["better"],
            "metric": "accuracy",
            "value": 0.9,
            "previous": (0.8, runs["good"]),
        }
    ]
    assert changes["new_best"][0]["delta"] == pytest.approx(0.1)
    # the old failure was told by the first report: only the new one is new
    assert changes["new_failures"] == [
        {
            "run_id": runs["new_failure"],
            "experiment_id": exp["tabular"],
            "status": "FAILED",
            "run_name": "crashed",
            "experiment_name": "tabular",
        }
    ]
    assert changes["new_stuck"] == []


def test_a_third_report_with_no_change_names_none(story: Story) -> None:
    assert story.third["changes"] == {
        "new_best": [], "best_removed": [], "new_failures": [], "new_stuck": [],
        "new_parents_left_open": [], "alias_moves": [], "pass_rate_drops": [],
    }  # fmt: skip
    assert story.third["since"] == story.second["generated_at"]
    text = (story.out / "summary.txt").read_text()
    assert "Nothing new since the previous report" in text


def test_the_email_and_the_index_lead_with_the_changes(story: Story) -> None:
    email = parse_html(story.second_html["email.html"])
    text = " ".join(email.text().split())
    assert text.index("What changed") < text.index("New runs")
    assert "New best in cifar: better accuracy = 0.9 (+0.1), was 0.8 by good." in text
    rows = table_rows(email, "new_failures")
    assert [row[1].text().split("tabular")[0] for row in rows] == ["crashed"]
    assert "failed_runs" not in {n.attrs.get("id") for n in email.walk()}  # told once
    index = parse_html(story.second_html["index.html"])
    sections = [n.attrs["id"] for n in index.all("section")]
    assert sections[0] == "changes"
    best = table_rows(index, "new_best")
    assert [(r[0].text(), own_text(r[2]), r[3].text(), r[4].text(), r[6].text()) for r in best] == [
        ("cifar", "better", "0.9", "0.8", "+0.1")
    ]
    summary = story.second_html["summary.txt"]
    better_url = f"{UI}/#/experiments/{story.facts.experiment_ids['cifar']}/runs/"
    assert (
        f"NEW BEST in cifar: better accuracy = 0.9 (+0.1), was 0.8 by good\n    {better_url}"
        in (summary)
    )
    assert "NEW FAILURES SINCE THE PREVIOUS REPORT (1)" in summary


def test_every_run_id_links_to_its_run_in_the_mlflow_ui(story: Story) -> None:
    experiment_of = {
        run_id: experiment_id
        for run_id, experiment_id in duckdb.connect(str(story.db), read_only=True)
        .execute("select run_id, experiment_id from runs")
        .fetchall()
    }
    for page in ("index.html", "email.html"):
        doc = parse_html(story.second_html[page])
        links = [a for a in doc.all("a") if a.attrs.get("href", "").startswith(UI)]
        assert links, page
        for anchor in links:
            href = anchor.attrs["href"]
            if "/runs/" not in href:
                assert re.fullmatch(re.escape(UI) + r"/#/experiments/\d+", href), href
                continue
            match = RUN_LINK.fullmatch(href)
            assert match, href
            assert experiment_of[match.group(2)] == match.group(1), href
        # every shortened run id sits inside the link to that run
        ids = [code for code in doc.all("code") if len(code.attrs.get("title", "")) == 32]
        linked = {
            code.attrs["title"]
            for a in links
            for code in a.all("code")
            if a.attrs["href"].endswith("/runs/" + code.attrs.get("title", ""))
        }
        assert {code.attrs["title"] for code in ids} == linked, page
        assert page == "email.html" or len(linked) >= 5
    summary = story.second_html["summary.txt"]
    assert RUN_LINK.search(summary)


def test_public_url_is_where_the_email_links_and_no_local_path_shows(
    story: Story, tmp_path: Path
) -> None:
    for text in story.second_html.values():
        assert str(story.out) not in text and str(story.out.resolve()) not in text
    config = tmp_path / "runreport.toml"
    config.write_text('[report]\npublic_url = "https://reports.example.com/ml/"\n')
    out = tmp_path / "public"
    cli_ok("report", "--config", str(config), "--db", str(story.db), "--out", str(out))
    email = (out / "email.html").read_text()
    assert 'href="https://reports.example.com/ml/index.html"' in email
    assert "https://reports.example.com/ml/index.html" in (out / "summary.txt").read_text()
    assert str(tmp_path) not in email


def test_bad_ui_url_is_a_one_line_usage_error(story: Story, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("report", "--db", str(story.db), "--out", str(out), "--ui-url", "mlflow:5000")
    assert result.exit_code == 2
    assert unstamped(result.output).strip().splitlines() == [
        "runreport: error: --ui-url must be an http(s) URL, not 'mlflow:5000'. Fix the value"
    ]
    assert not out.exists()


def test_ui_url_defaults_to_the_http_tracking_uri_without_credentials(
    story: Story, tmp_path: Path
) -> None:
    assert ui_from_tracking_uri("https://alice:***@mlflow.internal:5000/base/?token=x#y") == (
        "https://mlflow.internal:5000/base"
    )
    assert ui_from_tracking_uri("sqlite:///mlflow.db") is None
    db = tmp_path / "served.duckdb"
    shutil.copy(story.db, db)
    with duckdb.connect(str(db)) as con:
        con.execute("update extract_log set tracking_uri = 'http://bob:***@mlflow.internal:5000'")
    result = render_report(db, tmp_path / "out")
    html = result.index_html.read_text()
    assert (
        f'href="http://mlflow.internal:5000/#/experiments/{story.facts.experiment_ids["cifar"]}"'
        in html
    )
    assert "bob" not in html
    # without an http(s) tracking URI and no --ui-url nothing links anywhere
    plain = render_report(story.db, tmp_path / "plain")
    assert 'href="http' not in plain.index_html.read_text()
    assert Links().run("a" * 32, "1") == ""


def test_previous_names_the_report_to_compare_with(story: Story, tmp_path: Path) -> None:
    """`runreport run` renders into a new dated folder and compares with reports/latest."""
    result = render_report(story.db, tmp_path / "2030-01-02", previous=story.out.parent / "second")
    assert result.changes == {
        "new_best": [], "best_removed": [], "new_failures": [], "new_stuck": [],
        "new_parents_left_open": [], "alias_moves": [], "pass_rate_drops": [],
    }  # fmt: skip
    fresh = render_report(story.db, tmp_path / "fresh")
    assert fresh.changes is None


def test_report_files_follow_the_umask(story: Story, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = render_report(story.db, tmp_path / "served")
    finally:
        os.umask(old)
    assert stat.S_IMODE(result.out.stat().st_mode) == 0o755
    assert stat.S_IMODE(result.index_html.stat().st_mode) == 0o644
    old = os.umask(0o077)
    try:
        private = render_report(story.db, tmp_path / "private")
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.out.stat().st_mode) == 0o700


def test_a_kill_between_the_two_renames_leaves_a_report(story: Story, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    render_report(story.db, out)
    before = (out / "report.json").read_bytes()
    # what the fallback's first rename leaves when the process dies right after it
    aside = tmp_path / f".reports{OLD_MARK}killed"
    os.replace(out, aside)
    render_report(story.db, tmp_path / "elsewhere")  # another folder: nothing to put back
    assert not out.exists()
    result = render_report(story.db, out)  # the next render puts the old one back first
    assert not aside.exists()
    saved = json.loads(result.out.joinpath("report.json").read_text())
    assert saved["since"] == json.loads(before)["generated_at"]  # it compared with it
