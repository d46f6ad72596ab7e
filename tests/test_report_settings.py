"""The settings a team chooses, applied when the report is rendered: `report --config`
ranks by the metric of [metrics.primary] with no new extract, zombie_ignore, parents left
open, ties, experiments that cannot be ranked, sections that fit the data, long windows,
and settings that survive a bare extract."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import StoreFacts, log_run, new_store, run_cli, unstamped
from tests.test_report import Node, own_text, parse, table_rows

DAY_MS = 24 * 3_600_000
CONFIG = """
[report]
zombie_ignore = ["note*"]

[metrics]
holdout_score = "higher"

[metrics.primary]
"CIFAR*" = "holdout_score"
"""


@dataclass
class Setup:
    facts: StoreFacts
    db: Path
    config: Path


def build_store(folder: Path) -> StoreFacts:
    uri = new_store(folder)
    client = MlflowClient(uri)
    facts = StoreFacts(uri)
    exp, runs = facts.experiment_ids, facts.run_ids
    now = int(time.time() * 1000)
    exp["cifar"] = client.create_experiment("CIFAR-10")
    for number, (train, holdout) in enumerate([(0.99, 0.71), (0.97, 0.83), (0.98, 0.78)]):
        runs[f"cifar{number}"] = log_run(
            client, exp["cifar"], f"cnn-{number}", metrics={"train_accuracy": train},
            start_time=now - (10 - number) * 3_600_000,
        )  # fmt: skip
        if number:  # the holdout metric is logged by fewer runs than train_accuracy
            client.log_metric(runs[f"cifar{number}"], "holdout_score", holdout)
    exp["pycaret"] = client.create_experiment("pycaret")
    runs["parent"] = log_run(
        client, exp["pycaret"], "compare_models", status="RUNNING", start_time=now - 3 * DAY_MS
    )
    for number in range(2):
        runs[f"child{number}"] = log_run(
            client, exp["pycaret"], f"model-{number}", parent=runs["parent"],
            metrics={"accuracy": 0.5}, start_time=now - 3 * DAY_MS + 1000 * (number + 1),
        )  # fmt: skip
    exp["notebooks"] = client.create_experiment("notebooks")
    runs["forgotten"] = log_run(
        client, exp["notebooks"], "forgotten", status="RUNNING", start_time=now - 2 * DAY_MS
    )
    exp["custom"] = client.create_experiment("custom")
    runs["custom"] = log_run(client, exp["custom"], "custom", metrics={"weirdness": 3.0})
    exp["tied"] = client.create_experiment("tied")
    for number, accuracy in enumerate([1.0, 0.9, 1.0, 1.0]):
        runs[f"tied{number}"] = log_run(
            client, exp["tied"], f"tie-{number}", metrics={"accuracy": accuracy},
            start_time=now - (5 - number) * 3_600_000,
        )  # fmt: skip
    exp["dups"] = client.create_experiment("dups")
    for number in range(22):
        for copy in range(2 if number else 3):
            log_run(client, exp["dups"], f"same-{number:02d}", start_time=now - copy * 1000)
    return facts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    folder = tmp_path_factory.mktemp("settings")
    facts = build_store(folder / "store")
    db = folder / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", facts.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    config = folder / "runreport.toml"
    config.write_text(CONFIG)
    return Setup(facts, db, config)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render(setup: Setup, out: Path, *args: str) -> Node:
    result = run_cli("report", "--db", str(setup.db), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    return parse(out / "index.html")


def leaderboard(doc: Node) -> dict[str, tuple[str, ...]]:
    """Experiment -> (metric, best, run, where the metric came from, ties): the metric's
    source and the ties are notes under the metric and the run."""

    def note(cell: Node) -> str:
        return " ".join(div.text() for div in cell.all("div"))

    return {
        row[0].text(): (
            own_text(row[1]),
            row[2].text(),
            own_text(row[3]),
            note(row[1]),
            note(row[3]),
        )
        for row in table_rows(doc, "leaderboard")
    }


def test_config_primary_metric_applies_at_render_with_no_new_extract(
    setup: Setup, tmp_path: Path
) -> None:
    before = digest(setup.db)
    bare = leaderboard(render(setup, tmp_path / "bare"))
    # without a config the naming rule picks the key most runs log: train_accuracy
    assert bare["CIFAR-10"] == ("train_accuracy ↑", "0.99", "cnn-0", "naming rule", "")
    configured = leaderboard(render(setup, tmp_path / "cfg", "--config", str(setup.config)))
    assert configured["CIFAR-10"] == ("holdout_score ↑", "0.83", "cnn-1", "config", "")
    assert digest(setup.db) == before  # the warehouse was only read
    # RUNREPORT_CONFIG does the same
    result = run_cli(
        "report", "--db", str(setup.db), "--out", str(tmp_path / "env"),
        env={"RUNREPORT_CONFIG": str(setup.config)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert leaderboard(parse(tmp_path / "env" / "index.html"))["CIFAR-10"][3] == "config"


def test_email_applies_the_config_too(setup: Setup, tmp_path: Path) -> None:
    target, out = tmp_path / "report.eml", tmp_path / "reports"
    result = run_cli(
        "email", "--config", str(setup.config), "--db", str(setup.db), "--out", str(out),
        "--to", "ops@example.com", "--ui-url", "https://mlflow.example.com",
        "--dry-run", str(target),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    email = parse(out / "email.html")
    (cifar,) = [row for row in table_rows(email, "leaderboard") if "CIFAR" in row[0].text()]
    assert "holdout_score" in cifar[0].text() and "config" in cifar[0].text()
    link = f"https://mlflow.example.com/#/experiments/{setup.facts.experiment_ids['cifar']}/runs/"
    assert target.is_file()
    text_part = (out / "summary.txt").read_text()
    assert link + setup.facts.run_ids["cifar1"] in text_part


def test_ties_are_said_and_the_earliest_run_wins(setup: Setup, tmp_path: Path) -> None:
    board = leaderboard(render(setup, tmp_path / "r"))
    assert board["tied"] == (
        "accuracy ↑", "1", "tie-0", "naming rule",
        "3 runs tie at 1; the earliest started is shown",
    )  # fmt: skip
    summary = (tmp_path / "r" / "summary.txt").read_text()
    assert "- tied: accuracy = 1 (tie-0); 3 runs tie, the earliest shown" in summary


def test_an_experiment_with_no_usable_metric_is_listed_with_a_hint(
    setup: Setup, tmp_path: Path
) -> None:
    doc = render(setup, tmp_path / "r")
    listed = doc.find_id("unranked_experiments")
    assert listed is not None
    lines = [" ".join(item.text().split()) for item in listed.all("li")]
    assert lines == [
        "custom (1 run): no logged metric has a known direction: choose one in "
        '[metrics.primary] of the config, e.g. "custom" = "accuracy"',
        "dups (45 runs): no logged metric has a known direction: choose one in "
        '[metrics.primary] of the config, e.g. "dups" = "accuracy"',
        "notebooks (1 run): no logged metric has a known direction: choose one in "
        '[metrics.primary] of the config, e.g. "notebooks" = "accuracy"',
    ]


def test_parent_left_open_is_no_zombie_and_zombie_ignore_applies(
    setup: Setup, tmp_path: Path
) -> None:
    ids = setup.facts.run_ids
    doc = render(setup, tmp_path / "bare")
    zombies = [own_text(r[0]) for r in table_rows(doc, "zombie_runs")]
    assert zombies == ["forgotten"]
    open_parents = table_rows(doc, "parents_left_open")
    assert [(own_text(r[0]), r[3].text()) for r in open_parents] == [("compare_models", "2")]
    configured = render(setup, tmp_path / "cfg", "--config", str(setup.config))
    assert configured.find_id("zombie_runs") is None
    figure = next(n for n in configured.walk() if n.attrs.get("data-figure") == "zombies")
    assert "0" in figure.text()
    assert ids["parent"] in (tmp_path / "cfg" / "parents_left_open.csv").read_text()


def test_duplicate_names_top_20_of_the_window_rest_in_the_csv(setup: Setup, tmp_path: Path) -> None:
    doc = render(setup, tmp_path / "r")
    rows = table_rows(doc, "duplicate_run_names")
    assert len(rows) == 20
    assert (rows[0][1].text(), rows[0][2].text()) == ("same-00", "3")
    assert " ".join(doc.find_id("duplicates").text().split()).endswith(  # type: ignore[union-attr]
        "and 2 more: see duplicate_run_names.csv"
    )
    assert len((tmp_path / "r" / "duplicate_run_names.csv").read_text().splitlines()) == 23


def test_empty_sections_collapse_to_one_line(setup: Setup, tmp_path: Path) -> None:
    doc = render(setup, tmp_path / "r")
    estimators = doc.find_id("estimators")
    assert estimators is not None and estimators.attrs.get("class") == "collapsed"
    (title,), (line,) = estimators.all("h2"), estimators.all("p")
    assert (title.text(), line.text()) == (
        "Runs per estimator",
        "No run names an estimator: sklearn autolog writes an estimator_name tag; set "
        "report.estimator_from to read another tag or param, or run_name.",
    )


def test_metric_summaries_are_per_experiment(setup: Setup, tmp_path: Path) -> None:
    rows = table_rows(render(setup, tmp_path / "r"), "metric_summary")
    accuracy = [(r[1].text(), r[2].text(), r[6].text()) for r in rows if r[0].text() == "accuracy"]
    assert accuracy == [("pycaret", "2", "0.5"), ("tied", "4", "1")]


def test_a_long_window_counts_by_week_and_lists_weeks_with_runs(
    setup: Setup, tmp_path: Path
) -> None:
    doc = render(setup, tmp_path / "r", "--days", "120")
    heading = doc.find_id("activity")
    assert heading is not None and "Runs per week" in heading.text()
    weeks = [r[0].text() for r in table_rows(doc, "runs_per_day")]
    assert 1 <= len(weeks) <= 2 and all(w.startswith("week of Mon ") for w in weeks)
    months = render(setup, tmp_path / "m", "--days", "400")
    assert table_rows(months, "runs_per_day")[0][0].text().endswith(time.strftime("%Y"))


def test_a_bad_primary_metric_is_a_one_line_config_error(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "r"
    render(setup, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.toml"
    bad.write_text('[metrics.primary]\n"CIFAR*" = 3\n')
    result = run_cli("report", "--db", str(setup.db), "--out", str(out), "--config", str(bad))
    assert result.exit_code == 2
    assert unstamped(result.output).strip().splitlines() == [
        f"runreport: error: {bad}: metrics.primary.CIFAR* must be a metric key, not 3. "
        'Map an experiment name or glob to a metric key, e.g. "CIFAR*" = "test_accuracy"'
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_settings_survive_a_bare_extract(setup: Setup, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    uri = setup.facts.uri
    configured = run_cli(
        "extract", "--tracking-uri", uri, "--db", str(db), "--config", str(setup.config)
    )
    assert configured.exit_code == 0, configured.output
    assert run_cli("extract", "--tracking-uri", uri, "--db", str(db)).exit_code == 0
    out = tmp_path / "r"
    result = run_cli("report", "--db", str(db), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert leaderboard(parse(out / "index.html"))["CIFAR-10"][3] == "config"
