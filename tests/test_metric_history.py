"""Metric history (issue #13): what `--metric-history` stores equals
`MlflowClient.get_metric_history` for every run and key, over SQLite and a real `mlflow
server` (the bulk endpoint, its 25,000-point cut included), with NaN/±inf, steps logged
out of order and a run deleted between listing and reading; an incremental extract
re-reads history only for the runs it re-reads; `metric_curves` rows are exact; the
learning curves are drawn in Chromium."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.cli import cli as mlflow_cli
from mlflow.entities import Metric

from etl.extract import history, reader
from etl.extract.parallel import page_records
from etl.report.render import render_report
from tests.conftest import MlflowServer, log_run, new_store, run_cli, start_mlflow_server
from tests.test_entities import fluent_api
from tests.test_report_browser import image_sizes, open_page
from tests.test_warehouse_safety import query

Point = tuple[str, str, str, int, int]  # run_id, key, repr(value), step, timestamp ms
BIG_POINTS = history.BULK_MAX_POINTS


def log_points(
    client: MlflowClient, run_id: str, key: str, points: list[tuple[int, float]]
) -> None:
    """(step, value) pairs in the order given, one ms apart, 1,000 a log_batch call."""
    start = int(time.time() * 1000)
    metrics = [Metric(key, v, start + i, step) for i, (step, v) in enumerate(points)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def build_history_store(folder: Path) -> dict[str, Any]:
    uri = new_store(folder)
    client = MlflowClient(uri)
    exp = client.create_experiment(
        "curves",
        tags={
            "mlflow.experiment.primaryMetric.name": "loss",
            "mlflow.experiment.primaryMetric.greaterIsBetter": "False",
        },
    )
    runs: dict[str, str] = {}
    for name in ("improving", "plateau", "shuffled", "odd"):
        runs[name] = log_run(client, exp, name)
    log_points(client, runs["improving"], "loss", [(s, 1 / (s + 1)) for s in range(10)])
    plateau = [1.0, 0.5, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    log_points(client, runs["plateau"], "loss", list(enumerate(plateau)))
    log_points(client, runs["plateau"], "accuracy", [(0, 0.1), (1, 0.5), (2, 0.9)])
    shuffled = [(5, 1.5), (1, 1.9), (3, 1.2), (0, 2.0), (2, 1.8), (4, 1.6), (3, 9.0)]
    log_points(client, runs["shuffled"], "loss", shuffled)  # out of order, step 3 twice
    odd = [(0, math.nan), (1, -math.inf), (2, 0.5), (3, math.inf)]
    log_points(client, runs["odd"], "val_loss", odd)
    log_points(client, runs["odd"], "loss", [(0, 3.0)])
    other = client.create_experiment("big")
    runs["big"] = log_run(client, other, "big")
    runs["big_neighbour"] = log_run(client, other, "big neighbour")
    log_points(client, runs["big"], "points", [(s, float(s % 97)) for s in range(BIG_POINTS)])
    log_points(client, runs["big_neighbour"], "points", [(s, float(s)) for s in range(10)])
    return {"uri": uri, "runs": runs, "experiment": exp}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_history_store(tmp_path_factory.mktemp("history"))


@pytest.fixture(scope="module")
def server(store: dict[str, Any]) -> Iterator[MlflowServer]:
    served = start_mlflow_server(store["uri"])
    yield served
    served.stop()


def value_text(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def oracle(uri: str) -> list[Point]:
    """get_metric_history for every run (every lifecycle stage) and key."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in reader.list_experiments(client)]
    points: list[Point] = []
    for page in reader.run_pages(client, experiments):
        for run in page:
            for key in run.data.metrics:
                points.extend(
                    (run.info.run_id, m.key, value_text(m.value), m.step, m.timestamp)
                    for m in client.get_metric_history(run.info.run_id, key)
                )
    return sorted(points)


def stored(db: Path, where: str = "") -> list[Point]:
    rows = query(
        db,
        f"select run_id, key, value, step, epoch_ms(timestamp) from metric_history {where}",
    )
    return sorted((r, k, value_text(v), s, t) for r, k, v, s, t in rows)


def extract(uri: str, db: Path, *extra: str) -> None:
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db), "--metric-history", *extra)
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_history_equals_get_metric_history_on_sqlite(
    store: dict[str, Any], tmp_path: Path, workers: str
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(store["uri"], db, "--workers", workers)
    expected = oracle(store["uri"])
    assert len(expected) == 10 + 10 + 3 + 7 + 4 + 1 + BIG_POINTS + 10
    assert stored(db) == expected
    assert query(db, "select warnings from extract_log") == [(0,)]


def test_history_equals_get_metric_history_over_http(
    store: dict[str, Any], server: MlflowServer, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(server.uri, db)
    assert stored(db) == oracle(server.uri)
    big = store["runs"]["big"]
    assert query(db, f"select count(*) from metric_history where run_id = '{big}'") == [
        (BIG_POINTS,)
    ]


def test_a_full_bulk_answer_is_completed_run_by_run(
    store: dict[str, Any], server: MlflowServer
) -> None:
    """The two runs of key `points` hold 25,010 points: the first answer is cut at 25,000."""
    client = MlflowClient(server.uri)
    runs = [(store["runs"]["big"], ["points"]), (store["runs"]["big_neighbour"], ["points"])]
    warnings: list[str] = []
    chunks = list(history.history_chunks(client, runs, warnings))
    rows = chunks[0]["metric_history"]
    assert len(rows["run_id"]) == BIG_POINTS + 10
    assert rows["run_id"].count(store["runs"]["big_neighbour"]) == 10
    assert sorted(rows["step"]) == sorted([*range(BIG_POINTS), *range(10)])
    assert warnings == []


@pytest.mark.parametrize("served", [False, True])
def test_run_deleted_between_listing_and_reading(
    tmp_path: Path, served: bool, request: pytest.FixtureRequest
) -> None:
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    kept = log_run(client, exp, "kept", metrics={"loss": 1.0})
    soft = log_run(client, exp, "deleted", metrics={"loss": 2.0})
    gone = log_run(client, exp, "purged", metrics={"loss": 3.0})
    log_points(client, kept, "loss", [(1, 0.5), (2, 0.25)])
    server = start_mlflow_server(uri) if served else None
    request.addfinalizer(server.stop if server else lambda: None)
    reading = MlflowClient(server.uri if server else uri)
    (listed,) = reader.run_pages(reading, [exp])
    client.delete_run(soft)
    client.delete_run(gone)
    # removed for good by `mlflow gc` itself, run in this process (a new one spends
    # seconds importing MLflow); it sets the global tracking URI, which fluent_api resets
    with fluent_api(uri):
        purged = CliRunner().invoke(
            mlflow_cli,
            ["gc", "--backend-store-uri", uri, "--tracking-uri", uri, "--run-ids", gone],
            catch_exceptions=False,
        )
    assert purged.exit_code == 0, purged.output
    records, warnings = page_records(listed, reading, metric_history=True)
    got = records["metric_history"]
    points = sorted(zip(got["run_id"], got["step"], got["value"], strict=True))
    # the soft-deleted run still has its history in MLflow; the purged one has none left
    assert points == sorted([(kept, 0, 1.0), (kept, 1, 0.5), (kept, 2, 0.25), (soft, 0, 2.0)])
    assert warnings == []
    assert sorted(records["runs"]["run_id"]) == sorted([kept, soft, gone])


def test_incremental_rereads_history_only_of_rereads(store: dict[str, Any], tmp_path: Path) -> None:
    uri = new_store(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    days_ago = int(time.time() * 1000) - 3 * 86_400_000  # ended before the overlap window
    finished = log_run(client, exp, "finished", metrics={"loss": 1.0}, start_time=days_ago)
    running = log_run(client, exp, "running", metrics={"loss": 1.0}, status="RUNNING")
    db = tmp_path / "runs.duckdb"
    extract(uri, db)
    log_points(client, running, "loss", [(1, 0.5), (2, 0.4)])
    new = log_run(client, exp, "new", metrics={"loss": 0.9})
    # a point logged to a finished run changes no time: the incremental extract does not
    # re-read that run, so its stored history stays as it was
    log_points(client, finished, "loss", [(1, 0.7)])
    extract(uri, db, "--incremental")
    assert query(db, "select mode from extract_log order by extract_id") == [
        ("full",),
        ("incremental",),
    ]
    full = tmp_path / "full.duckdb"
    extract(uri, full)
    assert stored(db, f"where run_id <> '{finished}'") == stored(
        full, f"where run_id <> '{finished}'"
    )
    per_run = "select run_id, count(*) from metric_history group by run_id order by run_id"
    assert dict(query(db, per_run)) == {finished: 1, running: 3, new: 1}
    assert dict(query(full, per_run)) == {finished: 2, running: 3, new: 1}


def test_metric_curves_rows_are_exact(store: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(store["uri"], db)
    runs = {run_id: name for name, run_id in store["runs"].items()}
    rows = query(
        db,
        "select run_id, key, greater_is_better, points, first_step, last_step, best_value, "
        "best_step, last_value, still_improving from metric_curves",
    )
    got = {(runs[r[0]], r[1]): r[2:] for r in rows}
    max_ = 1.7976931348623157e308
    assert got == {
        # the experiment's primary metric loss: lower is better
        ("improving", "loss"): (False, 10, 0, 9, 0.1, 9, 0.1, True),
        ("plateau", "loss"): (False, 10, 0, 9, 0.4, 2, 1.0, False),
        ("plateau", "accuracy"): (True, 3, 0, 2, 0.9, 2, 0.9, True),
        # steps logged 5, 1, 3, 0, 2, 4, 3: the last value is the one at step 5
        ("shuffled", "loss"): (False, 7, 0, 5, 1.2, 3, 1.5, False),
        # NaN and ±inf never best; one finite point is too few to call improving
        ("odd", "val_loss"): (False, 4, 0, 3, 0.5, 2, max_, None),
        ("odd", "loss"): (False, 1, 0, 0, 3.0, 0, 3.0, None),
        # no direction known for "points"
        ("big", "points"): (None, BIG_POINTS, 0, BIG_POINTS - 1, None, None, 70.0, None),
        ("big_neighbour", "points"): (None, 10, 0, 9, None, None, 9.0, None),
    }


def test_learning_curves_drawn_in_chromium(
    store: dict[str, Any], tmp_path: Path, chromium: Any
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(store["uri"], db)
    report = render_report(db, tmp_path / "report")
    page, log = open_page(chromium, report.index_html, 1280)
    try:
        assert log.console_errors == [] and log.page_errors == []
        curves = [i for i in image_sizes(page) if i["alt"].startswith("Learning curves")]
        assert [i["alt"] for i in curves] == ["Learning curves: curves, loss"]
        assert curves[0]["complete"] and curves[0]["w"] > 0 and curves[0]["h"] > 0
        assert curves[0]["shown"] > 200
        table = page.inner_text("#learning-curves table")
        # the leaderboard's order on the latest loss: 0.1, 1.0, 1.5, 3.0
        assert [line.split("\t")[1] for line in table.splitlines()[1:]] == [
            "improving",
            "plateau",
            "shuffled",
            "odd",
        ]
    finally:
        page.context.close()


def test_without_history_the_section_says_how_to_turn_it_on(
    store: dict[str, Any], tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", store["uri"], "--db", str(db))
    assert result.exit_code == 0, result.output
    report = render_report(db, tmp_path / "report")
    html = report.index_html.read_text(encoding="utf-8")
    section = html[html.index('<section id="learning-curves"') :]
    section = section[: section.index("</section>")]
    assert "warehouse.metric_history = true" in section
    assert "<img" not in section
    assert not list(report.out.glob("learning_curves_*.png"))
