"""Issue #21, learning curves and metric history that mean something, on stores built
through MLflow's own API:

- a continual-learning store logging without steps (every point at step 0, explicit
  timestamps so the logged order is known): `metric_curves` draws those runs against
  their logged order (axis 'order'), exact rows and `still_improving` at the 10% edge,
  a 2-point run not drawn, a run with real steps kept on 'step' (their rows in Spark:
  tests/test_spark.py);
- a file store kept in git (no empty folders, so no `artifacts/`), where MLflow's
  `get_metric_history` answers "Run not found" for every run: `runreport extract
  --metric-history` reads every point, equal to `get_metric_history` on the original
  store, without a warning line, and the report draws the curves;
- history that cannot be read is summed up in one warning line with the count and the
  cause, counted per run in `extract_log.warnings`, and the report says so;
- progress names the metric-history phase in keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from etl.extract import history, reader
from etl.extract.parallel import page_records
from etl.progress import RunProgress
from etl.report.curves import load_curves
from etl.report.render import render_report
from tests.conftest import build_rich_store, log_run, new_store, run_cli
from tests.test_metric_history import oracle, stored
from tests.test_warehouse_safety import query

T0 = 1_700_000_000_000  # points one second apart from here: the logged order is known
LOWER_IS_BETTER = {
    "mlflow.experiment.primaryMetric.name": "loss",
    "mlflow.experiment.primaryMetric.greaterIsBetter": "False",
}


def log_without_step(
    client: MlflowClient, run_id: str, key: str, values: list[float], order: list[int] | None = None
) -> None:
    """`values` at step 0, the i-th at T0 + i s, sent in the order `order` gives (by
    default in time order)."""
    metrics = [Metric(key, value, T0 + 1000 * i, 0) for i, value in enumerate(values)]
    client.log_batch(run_id, metrics=[metrics[i] for i in order or range(len(metrics))])


@dataclass
class Store:
    uri: str
    runs: dict[str, str] = field(default_factory=dict)  # name -> run_id


def build_continual_store(folder: Path) -> Store:
    """Continual-learning runs logging without steps, beside a run with real steps."""
    store = Store(new_store(folder))
    store.runs.update(log_continual_runs(store.uri))
    return store


def log_continual_runs(uri: str) -> dict[str, str]:
    """build_continual_store's experiments and runs, logged into the store at `uri`: their
    names to their run ids."""
    client = MlflowClient(uri)
    continual = client.create_experiment("continual", tags=LOWER_IS_BETTER)
    mixed = client.create_experiment("mixed", tags=LOWER_IS_BETTER)
    runs: dict[str, str] = {}
    for name in ("steady", "edge46", "edge45", "shuffled", "two"):
        runs[name] = log_run(client, continual, name)
    for name in ("stepped", "flat", "single"):
        runs[name] = log_run(client, mixed, name)
    for i in range(50):  # log_metric(key, value) in a loop, as most code does: no step
        client.log_metric(runs["steady"], "loss", 1 / (i + 1), timestamp=T0 + 1000 * i)
    log_without_step(client, runs["steady"], "accuracy", [min(i, 29) / 29 for i in range(50)])
    log_without_step(client, runs["edge46"], "loss", [1.0] * 45 + [0.1] + [0.2] * 4)
    log_without_step(client, runs["edge45"], "loss", [1.0] * 44 + [0.1] + [0.2] * 5)
    shuffled = [100.0 - i for i in range(50)]
    log_without_step(client, runs["shuffled"], "loss", shuffled, order=[*range(49, -1, -1)])
    log_without_step(client, runs["two"], "loss", [0.5, 0.4])
    client.log_batch(
        runs["stepped"], metrics=[Metric("loss", 1 / (s + 1), T0 + s, s) for s in range(10)]
    )
    log_without_step(client, runs["flat"], "loss", [0.5, 0.4, 0.3, 0.35, 0.45])
    log_without_step(client, runs["single"], "loss", [0.7])
    return runs


@pytest.fixture(scope="module")
def continual(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """The continual store, extracted with its history."""
    folder = tmp_path_factory.mktemp("continual")
    store = build_continual_store(folder)
    db = folder / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", store.uri, "--db", str(db), "--metric-history")
    assert result.exit_code == 0, result.output
    return store, db


# --- steps that do not vary ---------------------------------------------------------------


def test_metric_curves_draw_stepless_runs_in_logged_order(
    continual: tuple[Store, Path],
) -> None:
    store, db = continual
    names = {run_id: name for name, run_id in store.runs.items()}
    rows = query(
        db,
        "select run_id, key, axis, points, first_step, last_step, best_value, best_step, "
        "last_value, still_improving from metric_curves",
    )
    assert {(names[r[0]], r[1]): r[2:] for r in rows} == {
        ("steady", "loss"): ("order", 50, 1, 50, 0.02, 50, 0.02, True),
        # accuracy (higher is better) first reaches 1.0 at its 30th point, then stays
        ("steady", "accuracy"): ("order", 50, 1, 50, 1.0, 30, 1.0, False),
        # the last 10% of 50 points: the best at point 46 is improving, at 45 not
        ("edge46", "loss"): ("order", 50, 1, 50, 0.1, 46, 0.2, True),
        ("edge45", "loss"): ("order", 50, 1, 50, 0.1, 45, 0.2, False),
        # sent newest first: the order is the timestamps', not the insertion's
        ("shuffled", "loss"): ("order", 50, 1, 50, 51.0, 50, 51.0, True),
        # fewer than 3 points: no verdict
        ("two", "loss"): ("order", 2, 1, 2, 0.4, 2, 0.4, None),
        ("stepped", "loss"): ("step", 10, 0, 9, 0.1, 9, 0.1, True),
        ("flat", "loss"): ("order", 5, 1, 5, 0.3, 3, 0.45, False),
        ("single", "loss"): ("step", 1, 0, 0, 0.7, 0, 0.7, None),
    }


def test_curves_follow_the_axis_and_skip_short_runs(continual: tuple[Store, Path]) -> None:
    store, db = continual
    con = duckdb.connect(str(db), read_only=True)
    try:
        curves = load_curves(con)
    finally:
        con.close()
    by_name = {c.run_name or "": c for g in curves.groups for c in g.curves}
    assert sorted(by_name) == sorted(store.runs)
    shuffled = by_name["shuffled"]
    assert shuffled.steps == list(range(1, 51))
    assert shuffled.values == [100.0 - i for i in range(50)]  # in time order
    assert by_name["steady"].values == [1 / (i + 1) for i in range(50)]
    assert by_name["stepped"].steps == list(range(10))
    assert by_name["flat"].steps == [1, 2, 3, 4, 5]
    # listed, not drawn
    assert by_name["two"].steps == [] and by_name["two"].row["points"] == 2
    assert by_name["single"].steps == []


def test_report_draws_logged_order_and_lists_short_runs(
    continual: tuple[Store, Path], tmp_path: Path
) -> None:
    _, db = continual
    report = render_report(db, tmp_path / "report")
    html = report.index_html.read_text(encoding="utf-8")
    section = html[html.index('<section id="learning-curves"') :]
    section = section[: section.index("</section>")]
    assert section.count("<img") == 2  # continual and mixed
    assert "drawn in logged order" in section
    assert "point 50" in section and "step 9" in section
    two = section[section.index(">two<") :]
    assert two[: two.index("</tr>")].endswith("<td>–</td>")  # still improving: no verdict
    assert sorted(p.name for p in report.out.glob("learning_curves_*.png")) == [
        "learning_curves_1.png",
        "learning_curves_2.png",
    ]


# --- a file store kept in git -------------------------------------------------------------


@dataclass
class GitKept:
    original: Path  # the mlruns folder MLflow made
    kept: Path  # its copy as git keeps it
    runs: dict[str, str] = field(default_factory=dict)


def build_git_kept_file_store(folder: Path) -> GitKept:
    """A file store made through MLflow's API (MLFLOW_ALLOW_FILE_STORE must be true), and
    its copy as git keeps it: git keeps no empty folder, so no run has `artifacts/` (nor
    an empty `params/`), and there is no `.trash/` or `models/`. Runs logging without
    steps (a key with `/`: a subfolder), a run with steps, a point logged with a dataset
    (a 5-field line), a deleted run, and a run of a deleted experiment (in `.trash/`)."""
    store = GitKept(folder / "mlruns", folder / "kept" / "mlruns")
    client = MlflowClient(store.original.as_uri())
    continual = client.create_experiment("continual", tags=LOWER_IS_BETTER)
    old = client.create_experiment("old")
    runs = store.runs
    for number in range(4):
        run_id = runs[f"learner{number}"] = log_run(
            client, continual, f"learner{number}", params={"lr": "0.1"} if number else None
        )
        log_without_step(client, run_id, "loss", [1 / (i + 1 + number) for i in range(50)])
        log_without_step(client, run_id, "accuracy", [i / 50 for i in range(50)])
        log_without_step(client, run_id, "val/loss", [2 / (i + 1) for i in range(50)])
    runs["stepped"] = log_run(client, continual, "stepped")
    client.log_batch(
        runs["stepped"], metrics=[Metric("loss", 1 / (s + 2), T0 + s, s) for s in range(20)]
    )
    client.log_metric(
        runs["stepped"], "eval", 0.5, T0, 3, dataset_name="holdout", dataset_digest="abc"
    )
    runs["deleted"] = log_run(client, continual, "deleted")
    log_without_step(client, runs["deleted"], "loss", [0.9, 0.8, 0.7])
    client.delete_run(runs["deleted"])
    runs["in_old"] = log_run(client, old, "in old")
    log_without_step(client, runs["in_old"], "loss", [3.0, 2.0, 1.0])
    client.delete_experiment(old)
    git_copy(store.original, store.kept)
    return store


def git_copy(source: Path, target: Path) -> None:
    """`source` as a git checkout holds it: files only, so no empty folder."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("artifacts"))
    for here, _, _ in sorted(os.walk(target), key=lambda walked: -len(walked[0])):
        if not os.listdir(here):
            os.rmdir(here)


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file()
    }


@pytest.fixture
def file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitKept:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return build_git_kept_file_store(tmp_path / "store")


def warning_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " WARNING " in line]


def test_git_kept_file_store_history_equals_get_metric_history(
    file_store: GitKept, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept_uri = file_store.kept.as_uri()
    learner = file_store.runs["learner0"]
    assert not list(file_store.kept.rglob("artifacts"))
    with pytest.raises(MlflowException, match="not found"):  # MLflow's reader there
        MlflowClient(kept_uri).get_metric_history(learner, "loss")
    before = file_digests(file_store.kept)
    monkeypatch.setattr(RunProgress, "LOG_EVERY_SECONDS", 0.0)  # a progress line a batch
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", kept_uri, "--db", str(db), "--metric-history")
    assert result.exit_code == 0, result.output
    assert warning_lines(result.output) == []
    expected = oracle(file_store.original.as_uri())
    # 4 runs x 3 keys x 50, 20 + 1 stepped, 3 deleted, 3 in the deleted experiment
    assert len(expected) == 600 + 21 + 3 + 3
    assert stored(db) == expected
    assert ("eval", 0) in {(p[1], p[3]) for p in expected}  # a 5-field line: step 0, as MLflow
    assert query(db, "select warnings from extract_log") == [(0,)]
    note = "select comment from duckdb_tables() where table_name = 'metric_history'"
    assert query(db, note) == [(history.HISTORY_NOTE.format(runs=0),)]
    # 4 x 3 + 2 + 1 + 1 keys
    assert "metric history: 16 of 16 keys" in result.output
    # history read from the files changes none; MLflow's store adds empty .trash/ and models/
    assert file_digests(file_store.kept) == before
    added = {p.name for p in file_store.kept.iterdir()} - {"0", *os.listdir(file_store.original)}
    assert added <= {".trash", "models"}
    assert not list((file_store.kept / "models").iterdir())

    report = render_report(db, tmp_path / "report")
    html = report.index_html.read_text(encoding="utf-8")
    section = html[html.index('<section id="learning-curves"') :]
    section = section[: section.index("</section>")]
    assert 'alt="Learning curves: continual, loss"' in section
    assert "point 50" in section
    assert "could not be read" not in section
    rows = query(
        db,
        "select axis, count(*) from metric_curves where key = 'loss' group by axis order by 1",
    )
    assert rows == [("order", 6), ("step", 1)]  # 4 learners, deleted, in_old; stepped


def test_a_metrics_file_unreadable_after_listing_is_one_summed_warning(
    file_store: GitKept,
) -> None:
    client = MlflowClient(file_store.kept.as_uri())
    (listed,) = reader.run_pages(client, [e.experiment_id for e in reader.list_experiments(client)])
    runs = file_store.runs
    experiment = {run.info.run_id: run.info.experiment_id for run in listed}
    for name in ("learner1", "learner2"):  # spoiled between listing and reading
        run_id = runs[name]
        path = file_store.kept / experiment[run_id] / run_id / "metrics" / "val" / "loss"
        path.write_text(path.read_text() + "not a point\n")
    records, warnings = page_records(listed, client, metric_history=True)
    assert sorted(warnings) == sorted(
        "metric history not read: a line of its metrics file is not `timestamp value step` "
        f"(run {runs[name]}, 1 of 3 keys)"
        for name in ("learner1", "learner2")
    )
    tally = history.SkippedHistories()
    assert tally.add(warnings) == []
    first = warnings[0].split("(run ")[1].split(",")[0]  # the first run of the cause
    assert tally.summary() == [
        "metric history not read for 2 runs (2 of their 6 keys): a line of its metrics file "
        f"is not `timestamp value step`; e.g. run {first}"
    ]
    assert tally.runs == 2
    # their other keys are kept
    history_rows = records["metric_history"]
    got = set(zip(history_rows["run_id"], history_rows["key"], strict=True))
    assert (runs["learner1"], "loss") in got and (runs["learner1"], "val/loss") not in got


# --- the report says when history was asked for and not read --------------------------------


def test_unread_history_is_one_line_and_the_report_says_so(tmp_path: Path) -> None:
    facts = build_rich_store(tmp_path / "store")
    store = sqlite3.connect(facts.uri.removeprefix("sqlite:///"))
    store.execute("alter table metrics rename to metrics_lost")  # a damaged store
    store.commit()
    store.close()
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", facts.uri, "--db", str(db), "--metric-history")
    assert result.exit_code == 0, result.output
    (line,) = warning_lines(result.output)
    assert "metric history not read for 3 runs (6 of their 6 keys): " in line
    assert query(db, "select warnings from extract_log") == [(3,)]
    note = "select comment from duckdb_tables() where table_name = 'metric_history'"
    assert query(db, note) == [(history.HISTORY_NOTE.format(runs=3),)]
    report = render_report(db, tmp_path / "report")
    html = report.index_html.read_text(encoding="utf-8")
    section = html[html.index('<section id="learning-curves"') :]
    section = section[: section.index("</section>")]
    assert "History was requested but could not be read for 3 runs" in section
    assert "warehouse.metric_history" not in section


# --- progress -----------------------------------------------------------------------------


@pytest.mark.pure
def test_progress_names_the_history_phase_in_keys(caplog: pytest.LogCaptureFixture) -> None:
    progress = RunProgress("full extract", 1, show_bar=False, history=True)
    progress.LOG_EVERY_SECONDS = 0.0
    page = {"metrics": {"run_id": ["a", "a", "b"], "key": ["x", "y", "x"]}}
    chunk = {"metric_history": {"run_id": ["a", "a", "a", "b"], "key": ["x", "x", "y", "x"]}}
    with caplog.at_level(logging.INFO, logger="runreport"), progress:
        progress.advance(2, page)
        progress.advance(0, {"metric_history": {"run_id": ["a"], "key": ["x"]}})
        progress.advance(0, chunk)
    assert [r.getMessage() for r in caplog.records] == [
        "full extract: 2 runs so far; metric history: 0 of 3 keys",
        "full extract: 2 runs so far; metric history: 1 of 3 keys",
        "full extract: 2 runs so far; metric history: 3 of 3 keys",  # never above the total
    ]
