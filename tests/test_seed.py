"""`runreport seed`: the demo runs, checked through MLflow's own API."""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.tracking import fluent
from mlflow.utils.autologging_utils import autologging_is_disabled

from etl.demo.seed import ALIAS, DATASET_NAME, REGISTERED_MODEL, SeedSummary, seed_demo_runs
from etl.errors import ConfigError
from tests.conftest import free_port, new_store, run_cli

ARTICLE = "/mlflow_sdk_test"
ESTIMATORS = "/diabetes_estimators"
PARENT_TAG = "mlflow.parentRunId"


@dataclass
class Seeded:
    uri: str
    db_file: Path
    summary: SeedSummary
    runs: list[Run]
    experiment_ids: dict[str, str]  # name -> id
    state_after: dict[str, object]  # MLflow's global state observed right after seeding
    state_before: dict[str, object]

    def in_experiment(self, name: str) -> list[Run]:
        return [r for r in self.runs if r.info.experiment_id == self.experiment_ids[name]]

    def named(self, run_name: str) -> list[Run]:
        return [r for r in self.runs if r.info.run_name == run_name]

    def children_of(self, run: Run) -> list[Run]:
        return [r for r in self.runs if r.data.tags.get(PARENT_TAG) == run.info.run_id]


def all_runs(uri: str) -> list[Run]:
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=50_000))


def global_state() -> dict[str, object]:
    return {
        "tracking_uri": mlflow.get_tracking_uri(),
        "active_experiment_id": fluent._active_experiment_id,
        "MLFLOW_EXPERIMENT_ID": os.environ.get("MLFLOW_EXPERIMENT_ID"),
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI"),
        "active_run": mlflow.active_run(),
        "sklearn_autolog_disabled": autologging_is_disabled("sklearn"),
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """One seeding into a SQLite file that does not exist yet, while the caller has its own
    tracking URI and active experiment set (which seeding must leave as they were)."""
    folder = tmp_path_factory.mktemp("seed")
    db_file = folder / "not" / "yet" / "mlflow.db"
    uri = f"sqlite:///{db_file}"
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("MLFLOW_", "RUNREPORT_")):
                patch.delenv(name)
        patch.chdir(folder)
        callers_uri = new_store(folder / "callers")
        mlflow.set_tracking_uri(callers_uri)
        for other in ("a", "b", "c"):  # so the caller's experiment id is none the seed uses
            MlflowClient(callers_uri).create_experiment(other)
        mlflow.set_experiment("callers experiment")
        state_before = global_state()
        try:
            summary = seed_demo_runs(uri)
            state_after = global_state()
        finally:
            mlflow.set_tracking_uri(None)
            fluent._active_experiment_id = None
    client = MlflowClient(uri)
    experiment_ids = {
        e.name: e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)
    }
    return Seeded(uri, db_file, summary, all_runs(uri), experiment_ids, state_after, state_before)


def metric_times(client: MlflowClient, run: Run, key: str) -> list[int]:
    return [m.timestamp for m in client.get_metric_history(run.info.run_id, key)]


def utc_date(millis: int) -> date:
    return datetime.fromtimestamp(millis / 1000, timezone.utc).date()


def test_seed_creates_the_missing_store_and_two_experiments(seeded: Seeded) -> None:
    assert seeded.db_file.is_file()
    assert set(seeded.experiment_ids) == {"Default", ARTICLE, ESTIMATORS}
    assert len(seeded.in_experiment(ARTICLE)) == 12
    assert len(seeded.in_experiment(ESTIMATORS)) == 9
    assert seeded.in_experiment("Default") == []


def test_summary_counts_what_the_store_holds(seeded: Seeded) -> None:
    summary = seeded.summary
    assert summary.experiment_names == [ARTICLE, ESTIMATORS]
    assert summary.experiments == 2
    assert summary.runs == len(seeded.runs) == 21
    children = [r for r in seeded.runs if PARENT_TAG in r.data.tags]
    assert summary.nested_child_runs == len(children) == 6
    failed = [r for r in seeded.runs if r.info.status == "FAILED"]
    assert summary.failed_runs == len(failed) == 1
    assert summary.start_dates == sorted({utc_date(r.info.start_time) for r in seeded.runs})
    text = summary.describe()
    assert "2 experiments: /mlflow_sdk_test, /diabetes_estimators" in text
    assert "21 runs: 6 nested child runs, 1 failed; 5 start dates" in text


def test_seeding_leaves_mlflow_global_state_as_it_was(seeded: Seeded) -> None:
    assert seeded.state_before["active_experiment_id"] == "4"
    assert seeded.state_after == seeded.state_before
    assert seeded.state_after["active_run"] is None
    assert seeded.state_after["sklearn_autolog_disabled"] is True


def test_run_reopened_by_run_id_logs_r2_after_mse_and_rmse(seeded: Seeded) -> None:
    client = MlflowClient(seeded.uri)
    [resumed] = [r for r in seeded.in_experiment(ARTICLE) if r.data.params.get("alpha") == "0.9"]
    [mse_time] = metric_times(client, resumed, "mse")
    [rmse_time] = metric_times(client, resumed, "rmse")
    [r2_time] = metric_times(client, resumed, "r2")
    assert mse_time <= rmse_time < r2_time
    # Other runs started in between: r2 came in a later session, not the first one.
    between = [r for r in seeded.runs if rmse_time < r.info.start_time < r2_time]
    assert len(between) >= 5
    assert resumed.info.status == "FINISHED"
    assert resumed.info.end_time >= r2_time  # reopening set a new end time
    assert math.isclose(resumed.data.metrics["rmse"] ** 2, resumed.data.metrics["mse"])


def test_runs_started_with_experiment_id_land_in_both_experiments(seeded: Seeded) -> None:
    today = max(utc_date(r.info.start_time) for r in seeded.runs)
    lasso_today = [
        r for r in seeded.in_experiment(ESTIMATORS) if utc_date(r.info.start_time) == today
    ]
    assert [r.data.tags["estimator_name"] for r in lasso_today] == ["Lasso"]
    assert lasso_today[0].data.params["alpha"] == "0.05"
    [article_run] = [
        r for r in seeded.in_experiment(ARTICLE) if r.data.params.get("alpha") == "0.8"
    ]
    assert article_run.data.tags["estimator_name"] == "Ridge"
    assert article_run.info.start_time < lasso_today[0].info.start_time


def test_primary_metric_tags_on_one_experiment_only(seeded: Seeded) -> None:
    client = MlflowClient(seeded.uri)
    article = client.get_experiment_by_name(ARTICLE)
    estimators = client.get_experiment_by_name(ESTIMATORS)
    assert article.tags["mlflow.experiment.primaryMetric.name"] == "rmse"
    assert article.tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "False"
    assert not any(k.startswith("mlflow.experiment.primaryMetric") for k in estimators.tags)


def test_a_dated_run_name_is_used_twice(seeded: Seeded) -> None:
    names = Counter(r.info.run_name for r in seeded.in_experiment(ARTICLE))
    [dated_name] = [n for n, count in names.items() if n.startswith("Ridge Regression 2")]
    assert names[dated_name] == 2
    twins = seeded.named(dated_name)
    assert len({r.info.run_id for r in twins}) == 2
    assert {r.data.params["alpha"] for r in twins} == {"0.5", "0.6"}
    assert dated_name == f"Ridge Regression {utc_date(twins[0].info.start_time)}"


def test_description_and_tags_are_stored(seeded: Seeded) -> None:
    [described] = [r for r in seeded.runs if "mlflow.note.content" in r.data.tags]
    assert described.data.tags["mlflow.note.content"] == (
        "Ridge, alpha 0.5: less regularisation than the 0.8 run."
    )
    assert described.data.tags["dataset"] == "sklearn diabetes"
    assert described.data.tags["stage"] == "tuning"
    assert described.info.run_name.startswith("Ridge Regression 2")


def test_nested_parent_gets_a_child_after_it_was_reopened(seeded: Seeded) -> None:
    client = MlflowClient(seeded.uri)
    [parent] = seeded.named("Ridge Regression Nested")
    children = {r.info.run_name: r for r in seeded.children_of(parent)}
    assert set(children) == {
        "Child Run: alpha 0.1",
        "Child Run: alpha 0.3",
        "Child Run: alpha 0.2",
    }
    first, attached, later = (children[f"Child Run: alpha {a}"] for a in ("0.1", "0.3", "0.2"))
    history = client.get_metric_history(parent.info.run_id, "best_rmse")
    assert [m.step for m in history] == [0, 1]
    # best_rmse step 0 was logged as the parent's first session closed, after its only
    # child; the alpha 0.2 child started later, in the session that reopened the parent.
    assert first.info.end_time <= history[0].timestamp < attached.info.start_time
    assert attached.info.end_time <= later.info.start_time
    assert later.info.end_time <= history[1].timestamp <= parent.info.end_time
    assert history[0].value == first.data.metrics["rmse"]
    assert history[1].value == min(r.data.metrics["rmse"] for r in children.values())
    assert parent.info.status == "FINISHED"
    assert "estimator_name" not in parent.data.tags  # the parent itself fits nothing


def test_child_attached_with_parent_run_id(seeded: Seeded) -> None:
    [parent] = seeded.named("Ridge Regression Nested")
    [attached] = seeded.named("Child Run: alpha 0.3")
    assert attached.data.tags[PARENT_TAG] == parent.info.run_id
    assert attached.data.params["alpha"] == "0.3"


def test_grid_search_under_autolog_makes_child_runs(seeded: Seeded) -> None:
    [search] = [r for r in seeded.runs if r.data.tags.get("estimator_name") == "GridSearchCV"]
    assert search.info.run_name == "Ridge GridSearchCV"
    children = seeded.children_of(search)
    assert sorted(r.data.params["alpha"] for r in children) == ["0.1", "0.5", "1.0"]
    assert all(r.info.experiment_id == search.info.experiment_id for r in children)
    assert search.data.params["best_alpha"] in {"0.1", "0.5", "1.0"}


def test_autolog_tags_every_fitted_run_with_its_estimator(seeded: Seeded) -> None:
    per_estimator = Counter(r.data.tags.get("estimator_name") for r in seeded.runs)
    assert per_estimator == {
        "Ridge": 11,
        "Lasso": 3,
        "ElasticNet": 3,
        "RandomForestRegressor": 2,
        "GridSearchCV": 1,
        None: 1,  # the nested parent
    }
    for run in seeded.runs:
        name = run.data.tags.get("estimator_name")
        if name:
            assert run.data.tags["estimator_class"].startswith("sklearn.")
            assert run.data.tags["estimator_class"].endswith(f".{name}")
    assert seeded.summary.runs_per_estimator["Ridge"] == 11


def test_one_run_failed_inside_its_with_block(seeded: Seeded) -> None:
    [failed] = [r for r in seeded.runs if r.info.status == "FAILED"]
    assert failed.info.experiment_id == seeded.experiment_ids[ESTIMATORS]
    assert failed.data.tags["estimator_name"] == "ElasticNet"
    assert "mse" not in failed.data.metrics
    assert failed.info.end_time >= failed.info.start_time
    [retry] = [r for r in seeded.named(failed.info.run_name) if r.info.status == "FINISHED"]
    assert retry.data.metrics["rmse"] > 0


def test_runs_are_spread_over_past_days_with_honest_times(seeded: Seeded) -> None:
    starts = Counter(utc_date(r.info.start_time) for r in seeded.runs)
    today = max(starts)
    past_days = [today - timedelta(days=n) for n in (6, 4, 3, 1)]
    assert sorted(starts) == [*past_days, today]
    assert [starts[d] for d in past_days] == [2, 2, 2, 2]
    for run in seeded.runs:
        assert run.info.end_time >= run.info.start_time
        assert run.data.tags["mlflow.user"] == run.info.user_id
        if utc_date(run.info.start_time) != today:
            # backdated through create_run(start_time=...): named after its day, ends that day
            assert run.info.run_name.endswith(str(utc_date(run.info.start_time)))
            assert utc_date(run.info.end_time) == utc_date(run.info.start_time)


def test_seed_logs_datasets_models_registry_and_traces(seeded: Seeded) -> None:
    client = MlflowClient(seeded.uri)
    [first] = [r for r in seeded.in_experiment(ARTICLE) if r.data.params.get("alpha") == "0.8"]
    assert first.inputs is not None
    named = [d for d in first.inputs.dataset_inputs if d.dataset.name == DATASET_NAME]
    assert [[(t.key, t.value) for t in d.tags] for d in named] == [
        [("mlflow.data.context", "training")]
    ]
    models = client.search_logged_models(list(seeded.experiment_ids.values()))
    assert sorted(m.name for m in models) == ["ridge-article", "ridge-search"]
    runs = {r.info.run_id: r for r in seeded.runs}
    for model in models:
        [metric] = model.metrics or []
        assert (metric.key, metric.dataset_name) == ("rmse", DATASET_NAME)
        assert metric.value == runs[model.source_run_id].data.metrics["rmse"]
        outputs = runs[model.source_run_id].outputs
        assert outputs is not None
        assert [o.model_id for o in outputs.model_outputs] == [model.model_id]
    by_name = {m.name: m.model_id for m in models}
    versions = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert sorted((int(v.version), v.source) for v in versions) == [
        (1, f"models:/{by_name['ridge-article']}"),
        (2, f"models:/{by_name['ridge-search']}"),
    ]
    aliases = client.get_registered_model(REGISTERED_MODEL).aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {ALIAS: "2"}
    traces = client.search_traces(locations=[seeded.experiment_ids[ARTICLE]], include_spans=False)
    assert sorted(t.info.state.value for t in traces) == ["ERROR", "OK", "OK"]
    assert sorted(t.info.token_usage["total_tokens"] for t in traces) == [55, 60, 62]
    feedback = [(a.name, a.value) for t in traces for a in t.info.assessments]
    assert sorted(feedback) == [("correct", False), ("correct", True)]


def test_cli_seed_twice_doubles_runs_but_not_experiments(tmp_path: Path) -> None:
    # an empty store, migrated once per session (`seeded` has the store that is not there yet)
    (tmp_path / "store").mkdir()
    uri = new_store(tmp_path / "store")
    first = run_cli("seed", "--tracking-uri", uri)
    assert first.exit_code == 0, first.output
    assert "2 experiments: /mlflow_sdk_test, /diabetes_estimators" in first.stdout
    assert "21 runs: 6 nested child runs, 1 failed" in first.stdout
    assert len(all_runs(uri)) == 21

    second = run_cli("seed", "--tracking-uri", uri)
    assert second.exit_code == 0, second.output
    assert "21 runs: 6 nested child runs, 1 failed" in second.stdout
    runs = all_runs(uri)
    assert len(runs) == 42
    names = [e.name for e in MlflowClient(uri).search_experiments(view_type=ViewType.ALL)]
    assert sorted(names) == sorted(["Default", ARTICLE, ESTIMATORS])
    assert Counter(r.info.status for r in runs)["FAILED"] == 2
    client = MlflowClient(uri)
    assert len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'")) == 4
    assert str(client.get_registered_model(REGISTERED_MODEL).aliases[ALIAS]) == "4"
    assert not (tmp_path / "mlruns").exists()  # artifacts went beside the store
    assert (tmp_path / "store" / "mlartifacts").is_dir()


def test_cli_seed_reports_an_unreachable_server() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_cli("seed", "--tracking-uri", uri, env={"RUNREPORT_TRACKING_RETRIES": "1"})
    assert result.exit_code == 1
    assert f"cannot reach the tracking server at {uri}" in result.stderr
    assert "gave up after 2 attempts" in result.stderr
    assert time.monotonic() - started < 60  # MLflow's own retries took four minutes


def test_seed_refuses_a_deleted_experiment(tmp_path: Path) -> None:
    uri = new_store(tmp_path)
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment(ESTIMATORS))
    with pytest.raises(ConfigError, match="the experiment /diabetes_estimators is deleted"):
        seed_demo_runs(uri)
    assert all_runs(uri) == []
    assert mlflow.active_run() is None


def test_seed_refuses_while_a_run_is_active(tmp_path: Path) -> None:
    uri = new_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as callers_run:
            with pytest.raises(ConfigError, match="an MLflow run is active"):
                seed_demo_runs(uri)
            assert mlflow.active_run().info.run_id == callers_run.info.run_id
    finally:
        mlflow.set_tracking_uri(None)
    assert [r.info.run_id for r in all_runs(uri)] == [callers_run.info.run_id]
