"""The report's Models, Datasets and GenAI sections, on real MLflow stores extracted
through the CLI (issue #12, report side)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from etl.report.render import render_report
from tests.conftest import log_run, new_store, run_cli
from tests.test_entities import EntityStore, build_entity_store, extract
from tests.test_report import Node, parse, table_rows
from tests.test_report_browser import open_page

UI = "http://mlflow.example:5000"


@dataclass
class Rendered:
    store: EntityStore
    db: Path
    out: Path


def render(db: Path, out: Path, *extra: str) -> None:
    result = run_cli("report", "--db", str(db), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output


def texts(rows: list[list[Node]]) -> list[list[str]]:
    return [[cell.text().strip() for cell in row] for row in rows]


def hrefs(cell: Node) -> list[str]:
    return [a.attrs["href"] for a in cell.all("a")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The entity store extracted, the champion alias moved from version 2 to 1, extracted
    again (so the alias history holds a move), then reported with the UI known."""
    folder = tmp_path_factory.mktemp("report-entities")
    store = build_entity_store(folder)
    db = folder / "runs.duckdb"
    extract(store.uri, db)
    MlflowClient(store.uri).set_registered_model_alias("churn", "champion", "1")
    extract(store.uri, db)
    out = folder / "report"
    render(db, out, "--ui-url", UI)
    return Rendered(store, db, out)


def test_models_section_lists_the_versions_and_the_alias_move_with_links(
    rendered: Rendered,
) -> None:
    doc = parse(rendered.out / "index.html")
    models = doc.find_id("models")
    assert models is not None and models.attrs.get("class") is None  # not collapsed
    versions = table_rows(doc, "model_versions_registered")
    shown = sorted((row[0], row[1], row[3]) for row in texts(versions))
    assert shown == [
        ("churn", "1", "challenger, champion"),
        ("churn", "2", ""),
        ("churn", "3", ""),
        ("fraud", "1", ""),
    ]
    links = sorted(href for row in versions for href in hrefs(row[1]))
    assert links == [
        f"{UI}/#/models/churn/versions/1",
        f"{UI}/#/models/churn/versions/2",
        f"{UI}/#/models/churn/versions/3",
        f"{UI}/#/models/fraud/versions/1",
    ]
    # versions made from a run's logged model link that run
    run_a = rendered.store.run_ids["a"]
    experiment = rendered.store.experiment_ids["models"]
    run_links = {href for row in versions for href in hrefs(row[4])}
    assert f"{UI}/#/experiments/{experiment}/runs/{run_a}" in run_links

    moves = table_rows(doc, "alias_moves")
    assert sorted(tuple(row[1:]) for row in texts(moves)) == [
        ("churn", "challenger", "first seen", "", "1"),
        ("churn", "champion", "first seen", "", "2"),
        ("churn", "champion", "moved", "2", "1"),
    ]
    moved = next(row for row in moves if row[3].text().strip() == "moved")
    assert hrefs(moved[4]) == [f"{UI}/#/models/churn/versions/2"]
    assert hrefs(moved[5]) == [f"{UI}/#/models/churn/versions/1"]

    best = texts(table_rows(doc, "best_logged_model"))
    assert [(row[0], row[1].split()[0], row[2].split()[0], row[3]) for row in best] == [
        ("models", "rmse", "lasso", "0.7")
    ]


def test_datasets_section_counts_the_runs_of_each_dataset(rendered: Rendered) -> None:
    doc = parse(rendered.out / "index.html")
    rows = texts(table_rows(doc, "runs_per_dataset"))
    # the source's type, and where it is (the source's URI, else its first text value)
    assert [(r[0], r[1], r[2], r[3], r[4], r[6]) for r in rows] == [
        ("diabetes", "d-train", "code", "x.csv", "2", "training"),
        ("diabetes", "d-test", "local", "y.csv", "1", "evaluation"),
    ]


def test_genai_section_shows_traces_errors_and_pass_rates(rendered: Rendered) -> None:
    doc = parse(rendered.out / "index.html")
    per_day = texts(table_rows(doc, "traces_per_day"))
    assert sorted((r[1], r[2], r[3], r[4], r[7]) for r in per_day) == [
        ("agents", "3", "1", "33 %", "18"),
        ("models", "1", "0", "0 %", ""),
    ]
    assert all(r[5].endswith(" ms") and r[6].endswith(" ms") for r in per_day)
    rates = texts(table_rows(doc, "assessment_pass_rates"))
    assert [(r[1], r[2], r[3], r[4]) for r in rates] == [
        ("correct", "2", "1 of 2", "50 %"),
        ("relevance", "1", "", ""),
    ]  # the expectation is no verdict: its own view, assessment_expectations


def test_report_json_and_csvs_carry_the_new_figures(rendered: Rendered) -> None:
    saved: dict[str, Any] = json.loads((rendered.out / "report.json").read_text())
    assert saved["models"] == {"versions_registered": 4, "alias_moves": 3}
    assert saved["traces"] == {
        "traces": 4,
        "errors": 1,
        "error_rate": 0.25,
        "cost_usd": None,  # no span named a model MLflow prices
        "previous_cost_usd": None,
        "open_issues": 0,
    }
    counts = {
        name: sum(1 for _ in csv.DictReader((rendered.out / f"{name}.csv").open()))
        for name in (
            "model_versions_registered",
            "alias_moves",
            "best_logged_model",
            "runs_per_dataset",
            "traces_per_day",
            "assessment_pass_rates",
        )
    }
    assert counts == {
        "model_versions_registered": 4,
        "alias_moves": 3,
        "best_logged_model": 1,
        "runs_per_dataset": 2,
        "traces_per_day": 2,
        "assessment_pass_rates": 2,  # feedback only: the expectation has its own view
    }


def test_email_and_summary_name_the_versions_and_the_alias_move(rendered: Rendered) -> None:
    email = (rendered.out / "email.html").read_text(encoding="utf-8")
    assert f'href="{UI}/#/models/fraud/versions/1"' in email
    assert "4 traces, 1 in error (25 %)." in email
    assert "champion of churn: moved from version 2 to version" in email
    summary = (rendered.out / "summary.txt").read_text(encoding="utf-8")
    assert "- ALIAS champion of churn: moved from version 2 to version 1\n" in summary
    assert "- REGISTERED fraud version 1  " in summary
    assert f"\n    {UI}/#/models/fraud/versions/1\n" in summary
    assert "\nGENAI IN THE LAST 7 DAYS\n4 traces, 1 in error (25 %).\n" in summary


@pytest.mark.parametrize("width", [600, 375])
def test_email_with_the_new_sections_does_not_scroll_sideways(
    rendered: Rendered, chromium: Any, tmp_path: Path, width: int
) -> None:
    html = (rendered.out / "email.html").read_text(encoding="utf-8")
    preview = tmp_path / "email.html"
    preview.write_text(html.replace('src="cid:', 'src="file://' + str(rendered.out) + "/"))
    page, log = open_page(chromium, preview, width)
    try:
        assert log.console_errors == [] and log.page_errors == []
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        assert "Models in the last 7 days" in page.inner_text("body")
    finally:
        page.context.close()


def test_versions_and_moves_outside_the_window_are_left_to_the_csv(
    rendered: Rendered, tmp_path: Path
) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=30)
    result = render_report(rendered.db, tmp_path / "later", now=later, days=7)
    doc = parse(result.index_html)
    models = doc.find_id("models")
    assert models is not None
    # the best logged model covers all history, so the section stays open
    assert "4 in all history" in models.text()
    assert doc.find_id("model_versions_registered") is None
    assert doc.find_id("alias_moves") is None
    assert result.figures["models"] == {"versions_registered": 0, "alias_moves": 0}
    assert result.figures["traces"] == {
        "traces": 0,
        "errors": 0,
        "error_rate": None,
        "cost_usd": None,
        "previous_cost_usd": None,
        "open_issues": 0,
    }
    genai = doc.find_id("genai")
    assert genai is not None and "No traces in the last 7 days" in genai.text()
    csv_rows = (tmp_path / "later" / "model_versions_registered.csv").read_text().splitlines()
    assert len(csv_rows) == 5  # header + every version


def test_without_entities_genai_is_absent_and_the_others_collapse(tmp_path: Path) -> None:
    uri = new_store(tmp_path)
    client = MlflowClient(uri)
    log_run(client, client.create_experiment("plain"), "only run", metrics={"rmse": 1.0})
    db, out = tmp_path / "runs.duckdb", tmp_path / "report"
    extract(uri, db)
    render(db, out)
    doc = parse(out / "index.html")
    assert doc.find_id("genai") is None
    for ident in ("models", "datasets"):
        section = doc.find_id(ident)
        assert section is not None and section.attrs.get("class") == "collapsed"
        assert len(section.all("p")) == 1
    saved = json.loads((out / "report.json").read_text())
    assert saved["models"] == {"versions_registered": 0, "alias_moves": 0}
    assert "traces" not in saved
    assert "GENAI" not in (out / "summary.txt").read_text()
    assert "MODELS" not in (out / "summary.txt").read_text()


def test_demo_renders_every_section(demo: Any) -> None:
    assert demo.result.exit_code == 0, demo.result.output
    doc = parse(demo.folder / "reports" / "index.html")
    for ident in ("models", "datasets", "genai"):
        section = doc.find_id(ident)
        assert section is not None and section.attrs.get("class") is None, ident
    for table in ("model_versions_registered", "alias_moves", "best_logged_model"):
        assert table_rows(doc, table), table
    assert table_rows(doc, "runs_per_dataset")
    assert table_rows(doc, "traces_per_day")
    assert table_rows(doc, "assessment_pass_rates")


def test_every_entity_links_to_its_mlflow_page(rendered: Rendered) -> None:
    """Registered models, logged models and an experiment's traces link to the pages the
    MLflow UI has for them (its routes: /models/:name, /experiments/:id/models/:model_id,
    /experiments/:id/traces)."""
    doc = parse(rendered.out / "index.html")
    experiments = rendered.store.experiment_ids
    versions = table_rows(doc, "model_versions_registered")
    assert {href for row in versions for href in hrefs(row[0])} == {
        f"{UI}/#/models/churn",
        f"{UI}/#/models/fraud",
    }
    models = {href for row in versions for href in hrefs(row[6])}
    assert models == {
        f"{UI}/#/experiments/{experiment}/models/{model_id}"
        for (name, _), model_id in rendered.store.version_models.items()
        if model_id is not None
        for experiment in [
            experiments["agents"] if model_id == rendered.store.model_ids["m3"] else
            experiments["models"]
        ]
    }  # fmt: skip
    [best] = table_rows(doc, "best_logged_model")
    [model_link] = hrefs(best[2])
    model_id = best[2].all("code")[0].attrs["title"]
    assert model_link == f"{UI}/#/experiments/{experiments['models']}/models/{model_id}"
    assert model_id in rendered.store.model_ids.values()
    traces = {href for row in table_rows(doc, "traces_per_day") for href in hrefs(row[2])}
    assert traces == {
        f"{UI}/#/experiments/{experiments['agents']}/traces",
        f"{UI}/#/experiments/{experiments['models']}/traces",
    }
    moves = table_rows(doc, "alias_moves")
    assert {href for row in moves for href in hrefs(row[1])} == {f"{UI}/#/models/churn"}
