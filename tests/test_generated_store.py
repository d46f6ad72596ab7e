"""The benchmark's store generator (tests/perf/make_store.py) writes what MLflow would.

It bulk-inserts rows straight into MLflow's SQLite tables, so these tests prove it
faithful: the same planned runs logged through MLflow's own API give the same rows; MLflow
reads the generated store back as planned (search_runs, get_metric_history, a start_time
filter); and `runreport extract` turns it into a warehouse equal to what MLflow returns.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, ViewType

from tests.conftest import run_cli
from tests.oracle import mlflow_snapshot, warehouse_snapshot
from tests.perf.make_store import (
    DAY_MS,
    GeneratedStore,
    PlannedRun,
    add_runs,
    cached_store,
    generate_store,
    sqlite_uri,
)

RUN_COLUMNS = (
    "run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, "
    "end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time"
)
REQUIRED_TAGS = {
    "mlflow.runName",
    "mlflow.user",
    "mlflow.source.type",
    "mlflow.source.name",
    "estimator_name",
    "estimator_class",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStore:
    folder = tmp_path_factory.mktemp("generated")
    with contextlib.chdir(folder):  # MLflow's default artifact root is ./mlruns
        return generate_store(
            folder / "mlflow.db", runs=300, experiments=5, seed=3, keep_plans=True
        )


def all_runs(client: MlflowClient, filter_string: str = "") -> list:
    """Every run of every experiment, deleted ones included, through search_runs."""
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs, token = [], None
    while True:
        page = client.search_runs(
            ids, filter_string, run_view_type=ViewType.ALL, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def stored_value(value: float) -> float:
    """What MLflow's SQL store returns for a logged value: ±inf comes back as ±max float."""
    if math.isinf(value):
        return math.copysign(1.7976931348623157e308, value)
    return value


def expected_latest(plan: PlannedRun) -> dict[str, tuple[str, int, int]]:
    """key -> (repr(value), step, timestamp) of the point with the greatest step, then time."""
    latest: dict[str, tuple[float, int, int]] = {}
    for key, value, timestamp, step in plan.history:
        if key not in latest or (step, timestamp) > (latest[key][1], latest[key][2]):
            latest[key] = (value, step, timestamp)
    return {k: (repr(stored_value(v)), s, t) for k, (v, s, t) in latest.items()}


def test_search_runs_returns_every_planned_run(generated: GeneratedStore) -> None:
    client = MlflowClient(generated.uri)
    experiments = {e.experiment_id: e for e in client.search_experiments(view_type=ViewType.ALL)}
    deleted_experiment = generated.experiment_ids[-1]
    assert experiments[deleted_experiment].lifecycle_stage == "deleted"
    returned = {run.info.run_id: run for run in all_runs(client)}
    plans = {plan.run_id: plan for plan in generated.plans}
    assert len(plans) == 300
    assert returned.keys() == plans.keys()
    for run_id, plan in plans.items():
        info, data = returned[run_id].info, returned[run_id].data
        deleted = plan.deleted or plan.experiment_id == deleted_experiment
        location = experiments[plan.experiment_id].artifact_location
        assert (
            info.experiment_id, info.run_name, info.status, info.user_id, info.start_time,
            info.end_time, info.lifecycle_stage, info.artifact_uri,
        ) == (
            plan.experiment_id, plan.name, plan.status, plan.user, plan.start_time,
            plan.end_time, "deleted" if deleted else "active",
            f"{location}/{run_id}/artifacts",
        )  # fmt: skip
        assert data.params == plan.params
        assert data.tags == plan.tags
        latest = {m.key: (repr(m.value), m.step, m.timestamp) for m in data._metric_objs}
        assert latest == expected_latest(plan)


def test_generated_shapes_are_those_of_real_runs(generated: GeneratedStore) -> None:
    runs = all_runs(MlflowClient(generated.uri))
    by_id = {run.info.run_id: run for run in runs}
    statuses = Counter(run.info.status for run in runs)
    assert statuses["FINISHED"] > 200 and statuses["FAILED"] > 0 and statuses["RUNNING"] > 0
    assert all(run.info.end_time is None for run in runs if run.info.status == "RUNNING")
    assert 0 < sum(run.info.lifecycle_stage == "deleted" for run in runs) < 100
    for run in runs:
        assert run.data.tags.keys() >= REQUIRED_TAGS
        assert run.data.tags["mlflow.runName"] == run.info.run_name
        assert run.data.tags["mlflow.user"] == run.info.user_id
        assert len(run.data.params) == 5 and len(run.data.metrics) == 5
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    parents = {run.data.tags["mlflow.parentRunId"] for run in children}
    assert 0.04 < len(parents) / len(runs) < 0.2
    for child in children:
        parent = by_id[child.data.tags["mlflow.parentRunId"]]
        assert parent.info.experiment_id == child.info.experiment_id
        assert parent.info.start_time <= child.info.start_time
        assert parent.data.tags["estimator_name"] == "GridSearchCV"
    starts = [run.info.start_time for run in runs]
    assert 50 * DAY_MS < max(starts) - min(starts) <= 60 * DAY_MS


def test_metric_history_is_the_generated_history(generated: GeneratedStore) -> None:
    client = MlflowClient(generated.uri)
    plan = next(p for p in generated.plans if sum(k == "loss" for k, *_ in p.history) >= 3)
    points = [(k, v, t, s) for k, v, t, s in plan.history if k == "loss"]
    history = client.get_metric_history(plan.run_id, "loss")
    got = sorted((m.key, m.value, m.timestamp, m.step) for m in history)
    assert got == sorted(points)
    assert len(got) >= 3


def test_diverged_runs_keep_nan_loss(tmp_path: Path) -> None:
    """The rare diverged run logs NaN and inf; MLflow reads them back as it stores them."""
    made = generate_store(tmp_path / "m.db", runs=1500, experiments=2, seed=5, keep_plans=True)
    plan = next(p for p in made.plans if any(math.isnan(v) for _, v, _, _ in p.history))
    run = MlflowClient(made.uri).get_run(plan.run_id)
    assert math.isnan(run.data.metrics["loss"])
    last_step = max(s for k, _, _, s in plan.history if k == "loss")
    assert [m.step for m in run.data._metric_objs if m.key == "loss"] == [last_step]


def test_start_time_filter_works(generated: GeneratedStore) -> None:
    starts = sorted(plan.start_time for plan in generated.plans)
    cutoff = starts[len(starts) // 2]
    found = all_runs(MlflowClient(generated.uri), f"attributes.start_time > {cutoff}")
    expected = {plan.run_id for plan in generated.plans if plan.start_time > cutoff}
    assert {run.info.run_id for run in found} == expected
    assert 100 < len(expected) < 200


def test_runreport_extract_equals_what_mlflow_returns(
    generated: GeneratedStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", generated.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    expected = mlflow_snapshot(generated.uri)
    assert warehouse_snapshot(db) == expected
    assert len(expected["runs"]) == 300
    assert len(expected["params"]) == 1500
    assert len(expected["metrics"]) == 1500
    assert len(expected["experiments"]) == 6  # five and Default


def test_added_runs_start_now_in_active_experiments(generated: GeneratedStore, tmp_path: Path):
    copy = tmp_path / "copy.db"
    shutil.copyfile(generated.path, copy)
    before = int(time.time() * 1000)
    added = add_runs(copy, 12, seed=9, keep_plans=True)
    client = MlflowClient(sqlite_uri(copy))
    runs = {run.info.run_id: run for run in all_runs(client)}
    assert len(runs) == 312
    active = set(generated.experiment_ids[:-1])
    for plan in added.plans:
        info = runs[plan.run_id].info
        assert before - 60_000 <= info.start_time <= int(time.time() * 1000)
        assert info.experiment_id in active


def test_cached_store_is_generated_once(tmp_path: Path) -> None:
    path, seconds = cached_store(40, experiments=2, cache_dir=tmp_path)
    assert seconds is not None and path.exists()
    again, seconds_again = cached_store(40, experiments=2, cache_dir=tmp_path)
    assert (again, seconds_again) == (path, None)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert len(all_runs(MlflowClient(sqlite_uri(path)))) == 40


# --- the same plan logged through MLflow's API gives the same rows -------------------------


@dataclass
class Replayed:
    uri: str
    id_map: dict[str, str]  # the replayed run's id -> the generated run's id


def replay_through_api(generated: GeneratedStore, folder: Path) -> Replayed:
    """Log the generated plan again with create_run / log_batch / set_terminated /
    delete_run / delete_experiment, as a user's code would."""
    source = MlflowClient(generated.uri)
    uri = sqlite_uri(folder / "replayed.db")
    client = MlflowClient(uri)
    experiments = sorted(
        source.search_experiments(view_type=ViewType.ALL), key=lambda e: int(e.experiment_id)
    )
    for experiment in experiments[1:]:  # Default exists already
        made = client.create_experiment(
            experiment.name, artifact_location=experiment.artifact_location, tags=experiment.tags
        )
        assert made == experiment.experiment_id
    new_ids: dict[str, str] = {}
    for plan in generated.plans:  # parents come before their children
        tags = dict(plan.tags)
        if plan.parent_id:
            tags["mlflow.parentRunId"] = new_ids[plan.parent_id]
        run = client.create_run(
            plan.experiment_id, start_time=plan.start_time, tags=tags, run_name=plan.name
        )
        run_id = new_ids[plan.run_id] = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, t, s) for k, v, t, s in plan.history],
            params=[Param(k, v) for k, v in plan.params.items()],
        )
        if plan.status != "RUNNING":
            client.set_terminated(run_id, plan.status, end_time=plan.end_time)
        if plan.deleted:
            client.delete_run(run_id)
    for experiment in experiments:
        if experiment.lifecycle_stage == "deleted":
            client.delete_experiment(experiment.experiment_id)
    return Replayed(uri, {new: old for old, new in new_ids.items()})


def raw_rows(uri: str, id_map: dict[str, str] | None = None) -> dict[str, set[tuple]]:
    """The rows of MLflow's run tables, run ids mapped; deleted_time only as set or not."""
    swap = id_map or {}
    con = sqlite3.connect(uri.removeprefix("sqlite:///"))
    try:
        rows: dict[str, set[tuple]] = {}
        for table, columns in {
            "runs": RUN_COLUMNS,
            "tags": '"key", value, run_uuid',
            "params": '"key", value, run_uuid',
            "metrics": '"key", value, timestamp, run_uuid, step, is_nan',
            "latest_metrics": '"key", value, timestamp, step, is_nan, run_uuid',
        }.items():
            found = con.execute(f"select {columns} from {table}").fetchall()
            rows[table] = {tuple(swap.get(v, v) for v in row) for row in found}
        runs = set()
        for row in rows["runs"]:
            artifact_uri = row[11]
            for new, old in swap.items():
                artifact_uri = artifact_uri.replace(new, old)
            runs.add((*row[:11], artifact_uri, row[12], row[13] is not None))
        rows["runs"] = runs
        rows["experiments"] = set(
            con.execute(
                "select experiment_id, name, artifact_location, lifecycle_stage, workspace "
                "from experiments"
            ).fetchall()
        )
        rows["experiment_tags"] = set(con.execute("select * from experiment_tags").fetchall())
        return rows
    finally:
        con.close()


def test_api_replay_writes_the_same_rows(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        made = generate_store(
            tmp_path / "g.db", runs=60, experiments=3, seed=11, keep_plans=True, diverged_share=0.2
        )
        replayed = replay_through_api(made, tmp_path)
    generated_rows = raw_rows(made.uri)
    replayed_rows = raw_rows(replayed.uri, replayed.id_map)
    for table in generated_rows:
        assert generated_rows[table] == replayed_rows[table], table
    # the comparison covered every kind of row the generator makes
    runs = generated_rows["runs"]
    assert len(runs) == 60
    assert {row[6] for row in runs} >= {RunStatus.to_string(RunStatus.FINISHED), "FAILED"}
    assert {row[10] for row in runs} == {"active", "deleted"}
    assert len(generated_rows["metrics"]) > len(generated_rows["latest_metrics"]) == 300
    assert any(key == "mlflow.parentRunId" for key, _, _ in generated_rows["tags"])
    assert any(row[4] == 1 for row in generated_rows["latest_metrics"])  # a NaN
    assert any(abs(row[1]) > 1e308 for row in generated_rows["latest_metrics"])  # an inf
    newest = Counter()
    for key, _, timestamp, run_id, _, _ in generated_rows["metrics"]:
        newest[run_id, key] = max(newest[run_id, key], timestamp)
    assert any(ts < newest[run, key] for key, _, ts, _, _, run in generated_rows["latest_metrics"])
