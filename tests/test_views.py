"""The views of sql/ on a store built through MLflow's API, extracted by the CLI, with
exact expected values; the article's pandas code is the oracle for the two counts."""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from etl.errors import ConfigError, JobFailed
from etl.warehouse.settings import ViewSettings, apply_settings, glob_to_like
from etl.warehouse.views import create_views, view_files
from tests.conftest import StoreFacts, log_run, new_store, run_cli

UTC = dt.timezone.utc
MISSING_PARENT = "f" * 32
MISSING_DATABRICKS_PARENT = "e" * 32

# The contract (helpers/VIEWS_CONTRACT.md): every view and its columns, in order.
RUN_OVERVIEW_COLUMNS = [
    "run_id", "experiment_id", "experiment_name", "run_name", "status", "user_id",
    "start_time", "end_time", "start_date", "duration_seconds", "lifecycle_stage",
    "parent_run_id", "root_run_id", "depth", "child_count", "is_nested_parent",
    "is_nested_child", "estimator_name", "estimator_class", "experiment_lifecycle_stage",
    "source_type", "workspace",
]  # fmt: skip
CONTRACT_COLUMNS = {
    # Databricks' system.mlflow tables' shape (sql/README.md)
    "experiments_latest": [
        "account_id", "update_time", "delete_time", "experiment_id", "workspace_id", "name",
        "create_time",
    ],
    "runs_latest": [
        "account_id", "update_time", "delete_time", "workspace_id", "run_id", "experiment_id",
        "created_by", "start_time", "end_time", "run_name", "status", "params", "tags",
        "aggregated_metrics",
    ],
    "run_metrics_history": [
        "account_id", "insert_time", "record_id", "workspace_id", "experiment_id", "run_id",
        "metric_name", "metric_time", "metric_step", "metric_value",
    ],
    "metric_curves": [
        "run_id",
        "experiment_id",
        "key",
        "greater_is_better",
        "points",
        "finite_points",
        "axis",
        "first_step",
        "last_step",
        "best_value",
        "best_step",
        "last_value",
        "still_improving",
    ],
    "runs_per_dataset": [
        "dataset_name",
        "dataset_digest",
        "source_type",
        "runs",
        "experiments",
        "contexts",
        "first_used",
        "last_used",
    ],
    "model_versions_registered": [
        "name",
        "version",
        "registered_at",
        "status",
        "current_stage",
        "aliases",
        "run_id",
        "run_name",
        "experiment_name",
        "model_id",
        "logged_model_name",
        "source",
        "experiment_id",
        "workspace",
    ],
    "model_lineage": [
        "name",
        "version",
        "registered_at",
        "registered_by",
        "run_link",
        "model_id",
        "logged_model_name",
        "source_run_id",
        "source_run_name",
        "experiment_id",
        "experiment_name",
        "source_run_datasets",
        "metric_key",
        "metric_value",
        "metric_step",
        "metric_run_id",
        "metric_dataset_name",
        "metric_dataset_digest",
        "workspace",
    ],
    "alias_moves": [
        "observed_at",
        "name",
        "alias",
        "previous_version",
        "version",
        "change",
        "kind",
        "workspace",
    ],
    "best_logged_model": [
        "experiment_id",
        "experiment_name",
        "metric_key",
        "greater_is_better",
        "model_id",
        "model_name",
        "value",
        "dataset_name",
        "source_run_id",
        "creation_time",
        "models_compared",
        "tied_models",
        "source",
    ],
    "traces_per_day": [
        "request_date",
        "experiment_id",
        "experiment_name",
        "traces",
        "errors",
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "total_tokens",
    ],
    "assessment_pass_rates": [
        "experiment_id",
        "experiment_name",
        "assessment_name",
        "assessments",
        "judged",
        "passed",
        "pass_rate",
        "source_types",
        "overridden",
    ],
    "assessment_expectations": [
        "experiment_id",
        "experiment_name",
        "expectation_name",
        "expectations",
        "traces",
        "distinct_values",
        "source_types",
        "first_logged",
        "last_logged",
    ],
    "genai_cost_per_day": [
        "day",
        "experiment_id",
        "experiment_name",
        "model_name",
        "model_provider",
        "cost",
        "input_tokens",
        "output_tokens",
        "calls",
        "traces",
    ],
    "genai_sessions": [
        "experiment_id",
        "experiment_name",
        "session_id",
        "users",
        "traces",
        "errors",
        "total_tokens",
        "total_cost",
        "first_request",
        "last_request",
        "duration_ms",
    ],
    "genai_usage_per_user": [
        "experiment_id",
        "experiment_name",
        "user",
        "traces",
        "sessions",
        "errors",
        "total_tokens",
        "total_cost",
        "first_request",
        "last_request",
    ],
    "traces_by_name": [
        "experiment_id",
        "experiment_name",
        "trace_name",
        "traces",
        "errors",
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "total_tokens",
        "total_cost",
    ],
    "run_overview": RUN_OVERVIEW_COLUMNS,
    "active_runs": RUN_OVERVIEW_COLUMNS,
    "metric_values": ["run_id", "key", "value", "step", "timestamp", "is_finite"],
    "runs_per_day": [
        "start_date", "runs", "finished", "failed", "killed", "running", "scheduled",
        "workspace",
    ],
    "runs_per_estimator": [
        "estimator_name", "runs", "finished", "failed", "first_start", "last_start",
        "workspace",
    ],
    "runs_by_status": ["status", "runs", "workspace"],
    "failed_runs": [
        "run_id", "experiment_name", "run_name", "status", "user_id", "start_time",
        "end_time", "duration_seconds", "estimator_name", "experiment_id",
    ],
    "zombie_runs": [
        "run_id", "experiment_name", "run_name", "user_id", "start_time", "hours_running",
        "experiment_id",
    ],
    "stuck_runs": [
        "run_id", "experiment_id", "experiment_name", "run_name", "user_id", "start_time",
        "hours_running", "child_count", "last_child_end", "kind", "is_ignored",
    ],
    "parents_left_open": [
        "run_id", "experiment_name", "run_name", "user_id", "start_time", "hours_running",
        "child_count", "last_child_end", "experiment_id",
    ],
    "experiment_primary_metric": [
        "experiment_id", "experiment_name", "metric_key", "greater_is_better", "source",
        "leaderboard_runs", "child_metric_key", "child_greater_is_better", "child_source",
    ],
    "metric_key_directions": ["metric_key", "greater_is_better", "is_training", "metric_kind"],
    "ranked_runs": [
        "experiment_id", "experiment_name", "metric_key", "greater_is_better", "source",
        "leaderboard_runs", "run_id", "run_name", "value", "estimator_name", "start_time",
        "params", "rank", "runs_compared", "tied_runs", "group_runs", "group_mean",
        "group_std",
    ],
    "leaderboard": [
        "experiment_id", "experiment_name", "metric_key", "greater_is_better", "run_id",
        "run_name", "value", "estimator_name", "start_time", "runs_compared", "source",
        "tied_runs", "leaderboard_runs", "group_runs", "group_mean", "group_std",
    ],
    "leaderboard_groups": [
        "experiment_id", "experiment_name", "metric_key", "greater_is_better", "params",
        "runs", "mean_value", "std_value", "min_value", "max_value", "best_run_id",
        "best_run_name", "group_rank",
    ],
    "unranked_experiments": [
        "experiment_id", "experiment_name", "runs", "metric_key", "source", "reason",
    ],
    "nested_searches": [
        "parent_run_id", "parent_run_name", "experiment_id", "experiment_name", "start_time",
        "child_count", "metric_key", "best_child_run_id", "best_child_run_name",
        "best_child_value",
    ],
    "duplicate_run_names": [
        "experiment_id", "experiment_name", "run_name", "runs", "first_start", "last_start",
    ],
    "runs_per_user": [
        "user_id", "runs", "finished", "failed", "first_start", "last_start", "workspace",
    ],
    "metric_summary": [
        "experiment_id", "experiment_name", "metric_key", "runs", "min_value", "max_value",
        "mean_value", "latest_value", "latest_run_id",
    ],
    "recent_runs": [
        "run_id", "experiment_name", "run_name", "status", "start_time", "metric_key",
        "metric_value", "source_type", "user_id", "estimator_name", "root_run_id",
        "experiment_id",
    ],
}  # fmt: skip
WIDE_BASE_COLUMNS = [
    "run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
    "lifecycle_stage",
]  # fmt: skip


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ms(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def estimator(name: str, module: str = "sklearn.linear_model") -> dict[str, str]:
    return {"estimator_name": name, "estimator_class": f"{module}.{name}"}


def build_views_store(folder: Path) -> StoreFacts:
    """Three-level nesting, a child of a deleted parent, a child of a run that never
    existed, a tag cycle, runs without an estimator tag, several start dates, primary
    metric tags both ways, an experiment judged by the name rule, a zombie, duplicate
    names, and a deleted experiment."""
    uri = new_store(folder)
    client = MlflowClient(uri)
    facts = StoreFacts(uri)
    exp, runs = facts.experiment_ids, facts.run_ids
    exp["default"] = "0"
    exp["regression"] = client.create_experiment(
        "regression",
        tags={
            "mlflow.experiment.primaryMetric.name": "rmse",
            "mlflow.experiment.primaryMetric.greaterIsBetter": "False",
        },
    )
    exp["classification"] = client.create_experiment(
        "classification",
        tags={
            "mlflow.experiment.primaryMetric.name": "accuracy",
            "mlflow.experiment.primaryMetric.greaterIsBetter": "True",
        },
    )
    exp["rule_based"] = client.create_experiment("rule_based")
    exp["half_tagged"] = client.create_experiment(
        "half_tagged", tags={"mlflow.experiment.primaryMetric.name": "my_score"}
    )
    exp["misc"] = client.create_experiment("misc")
    exp["gone"] = client.create_experiment("gone")

    alice, bob, carol = ({"mlflow.user": user} for user in ("alice", "bob", "carol"))
    reg = exp["regression"]
    runs["ridge"] = log_run(
        client, reg, "ridge", metrics={"rmse": 2.0}, start_time=ms("2024-03-01T10:00"),
        tags={**estimator("Ridge"), **alice, "mlflow.source.type": "NOTEBOOK"},
    )  # fmt: skip
    # a Databricks-style top-level run: rootRunId names itself; it is no parent
    client.set_tag(runs["ridge"], "mlflow.rootRunId", runs["ridge"])
    runs["lasso_1"] = log_run(
        client, reg, "lasso", metrics={"rmse": 1.5}, start_time=ms("2024-03-01T11:00"),
        tags={**estimator("Lasso"), **alice},
    )  # fmt: skip
    runs["lasso_2"] = log_run(
        client, reg, "lasso", metrics={"rmse": 1.5}, start_time=ms("2024-03-02T09:00"),
        tags={**estimator("Lasso"), **bob}, status="FAILED",
    )  # fmt: skip
    runs["diverged"] = log_run(
        client, reg, "diverged", metrics={"rmse": -math.inf}, status="KILLED",
        start_time=ms("2024-03-02T10:00"), tags={**estimator("Lasso"), **bob},
    )  # fmt: skip
    runs["deleted_best"] = log_run(
        client, reg, "lasso", metrics={"rmse": 0.1}, start_time=ms("2024-03-02T11:00"),
        tags={**estimator("Ridge"), **alice},
    )  # fmt: skip
    client.delete_run(runs["deleted_best"])
    runs["late"] = log_run(
        client, reg, "late", metrics={"rmse": 3.0}, start_time=ms("2024-03-01T23:30"),
        tags={**estimator("Ridge"), **alice},
    )  # fmt: skip

    clf = exp["classification"]
    svc = {**estimator("SVC", "sklearn.svm"), **carol}
    runs["grid"] = log_run(
        client, clf, "grid", metrics={"accuracy": 0.9}, start_time=ms("2024-03-05T08:00"),
        tags={**estimator("GridSearchCV", "sklearn.model_selection"), **carol},
    )  # fmt: skip
    for number, accuracy in ((1, 0.80), (2, 0.85), (3, math.nan)):
        runs[f"child_{number}"] = log_run(
            client, clf, f"grid-child-{number}", metrics={"accuracy": accuracy}, tags=svc,
            parent=runs["grid"], start_time=ms(f"2024-03-05T08:0{number}"),
        )  # fmt: skip
    runs["grandchild"] = log_run(
        client, clf, "grid-grandchild", metrics={"accuracy": 0.95}, tags=svc,
        parent=runs["child_2"], start_time=ms("2024-03-05T08:04"),
    )  # fmt: skip
    runs["deleted_child"] = log_run(
        client, clf, "grid-child-deleted", metrics={"accuracy": 0.99}, tags=carol,
        parent=runs["grid"], start_time=ms("2024-03-05T08:05"),
    )  # fmt: skip
    client.delete_run(runs["deleted_child"])
    runs["doomed"] = log_run(
        client, clf, "doomed parent", tags=carol, start_time=ms("2024-03-05T09:00")
    )
    runs["orphan"] = log_run(
        client, clf, "orphan of deleted", metrics={"accuracy": 0.7}, tags=carol,
        parent=runs["doomed"], start_time=ms("2024-03-05T09:01"),
    )  # fmt: skip
    client.delete_run(runs["doomed"])
    runs["missing_parent"] = log_run(
        client, clf, "missing parent", metrics={"accuracy": 0.6}, tags=carol,
        parent=MISSING_PARENT, start_time=ms("2024-03-05T09:02"),
    )  # fmt: skip
    runs["databricks"] = log_run(
        client, clf, "databricks child", parent=MISSING_DATABRICKS_PARENT,
        tags={**carol, "mlflow.rootRunId": runs["grid"]}, start_time=ms("2024-03-05T09:03"),
    )  # fmt: skip

    rule = exp["rule_based"]
    runs["rule_a"] = log_run(
        client, rule, "rule-a", metrics={"val_loss": 0.30, "r2": 0.5},
        start_time=ms("2024-03-01T12:00"),
    )  # fmt: skip
    runs["rule_b"] = log_run(
        client, rule, "rule-b", metrics={"val_loss": 0.20}, start_time=ms("2024-03-02T12:00")
    )
    runs["rule_c"] = log_run(
        client, rule, "rule-c", metrics={"val_loss": 0.25}, start_time=ms("2024-03-02T13:00")
    )
    runs["half"] = log_run(
        client, exp["half_tagged"], "half", metrics={"my_score": 0.4},
        start_time=ms("2024-03-02T14:00"),
    )  # fmt: skip

    misc = exp["misc"]
    runs["mystery"] = log_run(
        client, misc, "mystery", metrics={"custom_thing": 1.0},
        params={"Depth": "3", "depth": "4"}, start_time=ms("2024-03-05T10:00"),
    )  # fmt: skip
    runs["cycle_a"] = log_run(client, misc, "cycle-a", start_time=ms("2024-03-05T11:00"))
    runs["cycle_b"] = log_run(client, misc, "cycle-b", start_time=ms("2024-03-05T11:30"))
    client.set_tag(runs["cycle_a"], "mlflow.parentRunId", runs["cycle_b"])
    client.set_tag(runs["cycle_b"], "mlflow.parentRunId", runs["cycle_a"])
    now = int(time.time() * 1000)
    runs["zombie"] = log_run(
        client, misc, "zombie", status="RUNNING", start_time=now - 3 * 24 * 3600 * 1000
    )
    runs["fresh"] = log_run(client, misc, "fresh", status="RUNNING", start_time=now - 3600_000)

    runs["default_lasso"] = log_run(client, "0", "lasso", start_time=ms("2024-03-01T13:00"))
    runs["ghost"] = log_run(
        client, exp["gone"], "ghost", tags=estimator("Ridge"), start_time=ms("2024-03-01T14:00")
    )
    client.delete_experiment(exp["gone"])
    return facts


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> StoreFacts:
    return build_views_store(tmp_path_factory.mktemp("views_store"))


@pytest.fixture(scope="module")
def warehouse(store: StoreFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("views_db") / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", store.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture
def con(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(warehouse), read_only=True)
    connection.execute("set TimeZone = 'UTC'")
    yield connection
    connection.close()


@pytest.fixture
def writable_copy(warehouse: Path, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the warehouse to rebuild the views on with other settings."""
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(warehouse, copy)
    connection = duckdb.connect(str(copy))
    connection.execute("set TimeZone = 'UTC'")
    yield connection
    connection.close()


def rows(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple]:
    return con.execute(query).fetchall()


def records(con: duckdb.DuckDBPyConnection, query: str, args: list | None = None) -> list[dict]:
    cursor = con.execute(query, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def overview(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    return {row["run_id"]: row for row in records(con, "select * from run_overview")}


def run_start(store: StoreFacts, label: str) -> dt.datetime:
    start_ms = MlflowClient(store.uri).get_run(store.run_ids[label]).info.start_time
    return dt.datetime.fromtimestamp(start_ms / 1000, UTC)


# --- the contract ------------------------------------------------------------------


@pytest.mark.pure
def test_every_sql_file_is_a_contract_view() -> None:
    assert sorted(view_files()) == sorted(CONTRACT_COLUMNS)


def test_views_have_the_contract_columns(con: duckdb.DuckDBPyConnection) -> None:
    for view, columns in CONTRACT_COLUMNS.items():
        described = [row[0] for row in rows(con, f"describe {view}")]
        assert described == columns, view


def test_views_are_views_in_the_warehouse_and_settings_are_tables(
    con: duckdb.DuckDBPyConnection,
) -> None:
    user_views = "select view_name from duckdb_views() where not internal"
    views = {name for (name,) in rows(con, user_views)}
    assert views == {*CONTRACT_COLUMNS, "runs_wide", "runs_wide_all"}
    assert rows(con, "select * from runreport_settings") == [("UTC", 24.0)]
    directions = dict(rows(con, "select metric_key, greater_is_better from metric_directions"))
    assert directions["rmse"] is False
    assert directions["*_score"] is True
    assert len(directions) == 28


def test_times_are_utc_timestamptz(con: duckdb.DuckDBPyConnection) -> None:
    types = dict(rows(con, "select column_name, column_type from (describe run_overview)"))
    assert types["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["start_date"] == "DATE"
    assert types["duration_seconds"] == "DOUBLE"


def test_every_view_builds_on_a_store_without_runs(tmp_path: Path) -> None:
    uri = new_store(tmp_path / "empty")
    db = tmp_path / "empty.duckdb"
    assert run_cli("extract", "--tracking-uri", uri, "--db", str(db)).exit_code == 0
    with duckdb.connect(str(db), read_only=True) as empty:
        for view, columns in CONTRACT_COLUMNS.items():
            experiments = 1 if view == "experiments_latest" else 0  # MLflow's Default
            assert rows(empty, f"select count(*) from {view}") == [(experiments,)], view
            assert [r[0] for r in rows(empty, f"describe {view}")] == columns
        assert [r[0] for r in rows(empty, "describe runs_wide")] == WIDE_BASE_COLUMNS
        assert rows(empty, "select count(*) from runs_wide") == [(0,)]


# --- run_overview ---------------------------------------------------------------


def test_run_overview_holds_every_run_deleted_ones_too(
    con: duckdb.DuckDBPyConnection, store: StoreFacts
) -> None:
    runs = overview(con)
    assert set(runs) == set(store.run_ids.values())
    assert runs[store.run_ids["deleted_best"]]["lifecycle_stage"] == "deleted"
    ghost = runs[store.run_ids["ghost"]]
    assert (ghost["experiment_name"], ghost["experiment_lifecycle_stage"]) == ("gone", "deleted")


def test_run_overview_plain_columns(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    ridge = overview(con)[store.run_ids["ridge"]]
    assert ridge | {"run_id": None} == {
        "run_id": None,
        "experiment_id": store.experiment_ids["regression"],
        "experiment_name": "regression",
        "run_name": "ridge",
        "status": "FINISHED",
        "user_id": "alice",
        "start_time": at("2024-03-01T10:00"),
        "end_time": at("2024-03-01T10:01"),
        "start_date": dt.date(2024, 3, 1),
        "duration_seconds": 60.0,
        "lifecycle_stage": "active",
        "parent_run_id": None,
        "root_run_id": store.run_ids["ridge"],
        "depth": 0,
        "child_count": 0,
        # rootRunId == run_id, the article's "parent" test, is not nesting
        "is_nested_parent": False,
        "is_nested_child": False,
        "estimator_name": "Ridge",
        "estimator_class": "sklearn.linear_model.Ridge",
        "experiment_lifecycle_stage": "active",
        "source_type": "NOTEBOOK",
        "workspace": "default",
    }
    zombie = overview(con)[store.run_ids["zombie"]]
    assert (zombie["end_time"], zombie["duration_seconds"]) == (None, None)


NESTING_COLUMNS = (
    "parent_run_id", "root_run_id", "depth", "child_count", "is_nested_parent",
    "is_nested_child",
)  # fmt: skip


def test_run_overview_nesting(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    ids = store.run_ids
    runs = overview(con)

    def nesting(label: str) -> tuple:
        return tuple(runs[ids[label]][column] for column in NESTING_COLUMNS)

    assert nesting("grid") == (None, ids["grid"], 0, 4, True, False)  # deleted child counts
    assert nesting("child_1") == (ids["grid"], ids["grid"], 1, 0, False, True)
    assert nesting("child_2") == (ids["grid"], ids["grid"], 1, 1, True, True)
    assert nesting("grandchild") == (ids["child_2"], ids["grid"], 2, 0, False, True)
    assert nesting("deleted_child") == (ids["grid"], ids["grid"], 1, 0, False, True)
    # a deleted parent is still in the store: the walk goes through it
    assert nesting("doomed") == (None, ids["doomed"], 0, 1, True, False)
    assert nesting("orphan") == (ids["doomed"], ids["doomed"], 1, 0, False, True)
    # a parent the store never held ends the walk: the child is its own root
    assert nesting("missing_parent") == (MISSING_PARENT, ids["missing_parent"], 0, 0, False, True)
    # ... unless the Databricks rootRunId tag names a run that exists
    assert nesting("databricks") == (MISSING_DATABRICKS_PARENT, ids["grid"], 0, 0, False, True)
    # a corrupt cycle ends at the last run before the repeat
    assert nesting("cycle_a") == (ids["cycle_b"], ids["cycle_b"], 1, 1, True, True)
    assert nesting("cycle_b") == (ids["cycle_a"], ids["cycle_a"], 1, 1, True, True)
    parents = {r["run_name"] for r in runs.values() if r["is_nested_parent"]}
    assert parents == {"grid", "grid-child-2", "doomed parent", "cycle-a", "cycle-b"}


# --- the two counts, against the article's pandas code ------------------------------


@pytest.fixture
def article_df(store: StoreFacts, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    df = mlflow.search_runs(search_all_experiments=True)
    df["start_date"] = df["start_time"].dt.date
    return df


def test_runs_per_day_matches_the_article(
    con: duckdb.DuckDBPyConnection, article_df: pd.DataFrame
) -> None:
    by_day = article_df.groupby("start_date")["run_id"].count()
    assert dict(rows(con, "select start_date, runs from runs_per_day")) == {
        day: int(count) for day, count in by_day.items()
    }


def test_runs_per_estimator_matches_the_article(
    con: duckdb.DuckDBPyConnection, article_df: pd.DataFrame
) -> None:
    by_estimator = article_df.groupby("tags.estimator_name")["run_id"].count()
    assert dict(rows(con, "select estimator_name, runs from runs_per_estimator")) == {
        name: int(count) for name, count in by_estimator.items()
    }


def test_runs_per_day(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    zombie_day = run_start(store, "zombie").date()
    fresh_day = run_start(store, "fresh").date()
    expected = [
        (dt.date(2024, 3, 1), 5, 5, 0, 0, 0, 0),
        (dt.date(2024, 3, 2), 5, 3, 1, 1, 0, 0),
        (dt.date(2024, 3, 5), 11, 11, 0, 0, 0, 0),
        (zombie_day, 1, 0, 0, 0, 1, 0),
        (fresh_day, 1, 0, 0, 0, 1, 0),
    ]
    assert rows(con, "select * exclude (workspace) from runs_per_day") == expected


def test_runs_per_estimator(con: duckdb.DuckDBPyConnection) -> None:
    assert rows(con, "select * exclude (workspace) from runs_per_estimator") == [
        ("SVC", 4, 4, 0, at("2024-03-05T08:01"), at("2024-03-05T08:04")),
        ("Lasso", 3, 1, 1, at("2024-03-01T11:00"), at("2024-03-02T10:00")),
        ("Ridge", 2, 2, 0, at("2024-03-01T10:00"), at("2024-03-01T23:30")),
        ("GridSearchCV", 1, 1, 0, at("2024-03-05T08:00"), at("2024-03-05T08:00")),
    ]


def test_start_date_follows_the_settings_time_zone(
    writable_copy: duckdb.DuckDBPyConnection, store: StoreFacts
) -> None:
    create_views(writable_copy, ViewSettings(timezone="Asia/Tokyo"))
    by_day = dict(rows(writable_copy, "select start_date, runs from runs_per_day"))
    # 2024-03-01 23:30 UTC is 2024-03-02 08:30 in Tokyo
    assert (by_day[dt.date(2024, 3, 1)], by_day[dt.date(2024, 3, 2)]) == (4, 6)
    late = writable_copy.execute(
        "select start_time, start_date from run_overview where run_id = ?", [store.run_ids["late"]]
    ).fetchall()
    assert late == [(at("2024-03-01T23:30"), dt.date(2024, 3, 2))]


# --- status views -----------------------------------------------------------------


def test_a_store_without_workspaces_counts_in_the_default_one(
    con: duckdb.DuckDBPyConnection,
) -> None:
    for view in ("runs_per_day", "runs_per_estimator", "runs_by_status", "runs_per_user"):
        assert rows(con, f"select distinct workspace from {view}") == [("default",)], view


def test_runs_by_status(con: duckdb.DuckDBPyConnection) -> None:
    assert rows(con, "select * exclude (workspace) from runs_by_status") == [
        ("FINISHED", 19),
        ("RUNNING", 2),
        ("FAILED", 1),
        ("KILLED", 1),
    ]


def test_failed_runs_newest_first(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    assert rows(con, "select * from failed_runs") == [
        (
            store.run_ids["diverged"], "regression", "diverged", "KILLED", "bob",
            at("2024-03-02T10:00"), at("2024-03-02T10:01"), 60.0, "Lasso",
            store.experiment_ids["regression"],
        ),
        (
            store.run_ids["lasso_2"], "regression", "lasso", "FAILED", "bob",
            at("2024-03-02T09:00"), at("2024-03-02T09:01"), 60.0, "Lasso",
            store.experiment_ids["regression"],
        ),
    ]  # fmt: skip


def test_zombie_runs_default_threshold(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    found = rows(con, "select * from zombie_runs")
    assert [row[:5] for row in found] == [
        (store.run_ids["zombie"], "misc", "zombie", "unknown", run_start(store, "zombie"))
    ]
    assert 72 <= found[0][5] < 73


@pytest.mark.parametrize(("hours", "expected"), [(100, []), (0.5, ["zombie", "fresh"])])
def test_zombie_threshold_is_a_setting(
    writable_copy: duckdb.DuckDBPyConnection, hours: float, expected: list[str]
) -> None:
    create_views(writable_copy, ViewSettings(zombie_after_hours=hours))
    assert [name for (name,) in rows(writable_copy, "select run_name from zombie_runs")] == (
        expected
    )


# --- primary metric, leaderboard, nested searches ---------------------------------


def test_metric_key_directions(con: duckdb.DuckDBPyConnection) -> None:
    # every key logged (or named by a tag): its direction by the built-in rule, if any
    directions = "select metric_key, greater_is_better from metric_key_directions"
    assert rows(con, directions) == [
        ("accuracy", True),
        ("custom_thing", None),
        ("my_score", True),  # *_score; also the half_tagged experiment's tagged key
        ("r2", True),
        ("rmse", False),
        ("val_loss", False),  # *_loss
    ]
    # overrides in any case win; a key named only by [metrics.primary] is known too
    apply_settings(
        con,
        ViewSettings(
            metric_directions={"VAL_LOSS": True, "*_thing": False},
            primary_metrics={"misc": "latency_ms"},
        ),
    )
    assert dict(rows(con, directions)) == {
        "accuracy": True,
        "custom_thing": False,
        "latency_ms": None,
        "my_score": True,
        "r2": True,
        "rmse": False,
        "val_loss": True,
    }


def test_experiment_primary_metric(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    exp = store.experiment_ids
    assert rows(con, "select * from experiment_primary_metric") == [
        # the tagged key serves the nested children too: they log it
        (exp["classification"], "classification", "accuracy", True, "tag", "root",
         "accuracy", True, "tag"),
        # tagged name without greaterIsBetter: the direction comes from the rule (*_score)
        (exp["half_tagged"], "half_tagged", "my_score", True, "tag", "root", None, None, None),
        (exp["regression"], "regression", "rmse", False, "tag", "root", None, None, None),
        # no tags: val_loss (3 runs) beats r2 (1 run); misc logs no key the rule knows
        (exp["rule_based"], "rule_based", "val_loss", False, "rule", "root", None, None, None),
    ]  # fmt: skip


def test_leaderboard(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    exp, ids = store.experiment_ids, store.run_ids
    board = rows(con, "select * from leaderboard")
    # each best run's configuration is a group of its own: no two runs share params
    assert {row[12:] for row in board} == {("root", 1, row[6], None) for row in board}
    assert [row[:12] for row in board] == [
        # root runs only: the nested children (0.95, 0.85, ...) compete in their searches
        (
            exp["classification"], "classification", "accuracy", True, ids["grid"],
            "grid", 0.9, "GridSearchCV", at("2024-03-05T08:00"), 1, "tag", 1,
        ),
        (
            exp["half_tagged"], "half_tagged", "my_score", True, ids["half"], "half", 0.4,
            None, at("2024-03-02T14:00"), 1, "tag", 1,
        ),
        # -inf (stored by MLflow as -1.8e308) and the deleted run's 0.1 do not count;
        # the 1.5 tie (2 runs) goes to the earlier run
        (
            exp["regression"], "regression", "rmse", False, ids["lasso_1"], "lasso", 1.5,
            "Lasso", at("2024-03-01T11:00"), 4, "tag", 2,
        ),
        (
            exp["rule_based"], "rule_based", "val_loss", False, ids["rule_b"], "rule-b", 0.2,
            None, at("2024-03-02T12:00"), 3, "rule", 1,
        ),
    ]  # fmt: skip


def test_metric_directions_are_overridable(
    writable_copy: duckdb.DuckDBPyConnection, store: StoreFacts
) -> None:
    create_views(writable_copy, ViewSettings(metric_directions={"val_loss": True}))
    best = rows(
        writable_copy,
        "select run_id, value from leaderboard where experiment_name = 'rule_based'",
    )
    assert best == [(store.run_ids["rule_a"], 0.3)]
    # a pattern override: *_score now lower is better
    create_views(writable_copy, ViewSettings(metric_directions={"*_score": False}))
    assert rows(
        writable_copy,
        "select greater_is_better from experiment_primary_metric "
        "where experiment_name = 'half_tagged'",
    ) == [(False,)]


def test_nested_searches(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    exp, ids = store.experiment_ids, store.run_ids
    assert rows(con, "select * from nested_searches") == [
        (
            ids["cycle_b"], "cycle-b", exp["misc"], "misc", at("2024-03-05T11:30"), 1,
            None, None, None, None,
        ),
        (
            ids["cycle_a"], "cycle-a", exp["misc"], "misc", at("2024-03-05T11:00"), 1,
            None, None, None, None,
        ),
        (
            ids["child_2"], "grid-child-2", exp["classification"], "classification",
            at("2024-03-05T08:02"), 1, "accuracy", ids["grandchild"], "grid-grandchild", 0.95,
        ),
        # the deleted child (0.99) is not counted; the NaN child never wins
        (
            ids["grid"], "grid", exp["classification"], "classification",
            at("2024-03-05T08:00"), 3, "accuracy", ids["child_2"], "grid-child-2", 0.85,
        ),
    ]  # fmt: skip


# --- other views ----------------------------------------------------------------


def test_duplicate_run_names(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    # the deleted "lasso" and the one in another experiment do not count
    assert rows(con, "select * from duplicate_run_names") == [
        (
            store.experiment_ids["regression"], "regression", "lasso", 2,
            at("2024-03-01T11:00"), at("2024-03-02T09:00"),
        )
    ]  # fmt: skip


def test_runs_per_user(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    assert rows(con, "select * exclude (workspace) from runs_per_user") == [
        ("unknown", 10, 8, 0, at("2024-03-01T12:00"), run_start(store, "fresh")),
        ("carol", 8, 8, 0, at("2024-03-05T08:00"), at("2024-03-05T09:03")),
        ("alice", 3, 3, 0, at("2024-03-01T10:00"), at("2024-03-01T23:30")),
        ("bob", 2, 0, 1, at("2024-03-02T09:00"), at("2024-03-02T10:00")),
    ]


def test_metric_summary(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    found = rows(con, "select * from metric_summary")
    # one row per experiment and key; each key of this store lives in one experiment
    assert [(row[1], row[2]) for row in found] == [
        ("classification", "accuracy"), ("half_tagged", "my_score"), ("misc", "custom_thing"),
        ("regression", "rmse"), ("rule_based", "r2"), ("rule_based", "val_loss"),
    ]  # fmt: skip
    summary = {row[2]: row[3:] for row in found}
    assert sorted(summary) == ["accuracy", "custom_thing", "my_score", "r2", "rmse", "val_loss"]
    # -inf, stored as -1.8e308, stays out of min and mean; the deleted run's 0.1 too
    assert summary["rmse"] == (5, 1.5, 3.0, 2.0, 3.0, store.run_ids["late"])
    runs, low, high, mean, latest, latest_run = summary["accuracy"]
    assert (runs, low, high, latest) == (7, 0.6, 0.95, 0.6)
    assert latest_run == store.run_ids["missing_parent"]
    assert mean == pytest.approx(0.8)  # 0.9, 0.8, 0.85, 0.95, 0.7, 0.6; NaN left out
    assert summary["val_loss"][:3] == (3, 0.2, 0.3)


def test_recent_runs(con: duckdb.DuckDBPyConnection, store: StoreFacts) -> None:
    ids = store.run_ids
    recent = records(con, "select * from recent_runs")
    assert len(recent) == 23
    assert [r["run_name"] for r in recent[:4]] == ["fresh", "zombie", "cycle-b", "cycle-a"]
    by_id = {r["run_id"]: r for r in recent}
    assert by_id[ids["grandchild"]] | {"run_id": None} == {
        "run_id": None,
        "experiment_name": "classification",
        "run_name": "grid-grandchild",
        "status": "FINISHED",
        "start_time": at("2024-03-05T08:04"),
        "metric_key": "accuracy",
        "metric_value": 0.95,
        "source_type": None,
        "user_id": "carol",
        "estimator_name": "SVC",
        "root_run_id": ids["grid"],
        "experiment_id": store.experiment_ids["classification"],
    }
    assert (by_id[ids["rule_a"]]["metric_key"], by_id[ids["rule_a"]]["metric_value"]) == (
        "val_loss",
        0.3,
    )
    assert (by_id[ids["mystery"]]["metric_key"], by_id[ids["mystery"]]["metric_value"]) == (
        None,
        None,
    )
    assert ids["deleted_best"] not in by_id and ids["ghost"] not in by_id


def test_runs_wide_has_the_columns_and_rows_search_runs_returns(
    con: duckdb.DuckDBPyConnection, store: StoreFacts, article_df: pd.DataFrame
) -> None:
    columns = [row[0] for row in rows(con, "describe runs_wide")]
    assert columns[:7] == WIDE_BASE_COLUMNS
    assert columns == [row[0] for row in rows(con, "describe runs_wide_all")]
    # DuckDB names ignore case: the lower-case key gets the plain name, the other #2
    assert {"params.depth", "params.Depth#2"} <= set(columns)
    assert set(article_df.columns) - {"start_date", "params.Depth"} <= set(columns)
    # runs_wide: what search_runs(search_all_experiments=True) returns; runs_wide_all: all
    assert rows(con, "select count(*) from runs_wide") == [(len(article_df),)]
    assert sorted(r for (r,) in rows(con, "select run_id from runs_wide")) == sorted(
        article_df["run_id"]
    )
    assert rows(con, "select count(*) from runs_wide_all") == [(len(store.run_ids),)]
    (mystery,) = records(
        con, "select * from runs_wide where run_id = ?", [store.run_ids["mystery"]]
    )
    assert (mystery["params.depth"], mystery["params.Depth#2"]) == ("4", "3")
    assert mystery["metrics.custom_thing"] == 1.0
    assert mystery["tags.mlflow.runName"] == "mystery"
    deleted = records(
        con,
        'select lifecycle_stage, "metrics.rmse" from runs_wide_all where run_id = ?',
        [store.run_ids["deleted_best"]],
    )
    assert deleted == [{"lifecycle_stage": "deleted", "metrics.rmse": 0.1}]


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ViewSettings(timezone="Mars/Olympus_Mons"),
            "report.timezone must be an IANA time zone such as UTC or Europe/Berlin, "
            "not 'Mars/Olympus_Mons'",
        ),
        (ViewSettings(timezone="localtime"), "report.timezone must be an IANA time zone"),
        (ViewSettings(zombie_after_hours=-1), "report.zombie_after_hours must be"),
        (ViewSettings(zombie_after_hours=math.nan), "report.zombie_after_hours must be"),
        (
            ViewSettings(metric_directions={"loss": "yes"}),  # type: ignore[dict-item]
            'metrics.loss must be "higher" or "lower", not \'yes\'',
        ),
        (ViewSettings(metric_directions={"*": True}), "metrics: '*' is not a metric key"),
        (ViewSettings(primary_metrics={"exp": ""}), "metrics.primary.exp must be a metric key"),
        (ViewSettings(zombie_ignore=[" "]), "report.zombie_ignore must be names or globs"),
    ],
)
def test_bad_settings_are_config_errors(
    writable_copy: duckdb.DuckDBPyConnection, settings: ViewSettings, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_views(writable_copy, settings)
    # the views are left as they were
    assert rows(writable_copy, "select * from runreport_settings") == [("UTC", 24.0)]


def test_runs_wide_replaces_a_runs_wide_table_of_an_older_warehouse(
    writable_copy: duckdb.DuckDBPyConnection,
) -> None:
    writable_copy.execute("drop view runs_wide")
    writable_copy.execute("create table runs_wide as select run_id from runs")
    create_views(writable_copy)
    kind = "select table_type from information_schema.tables where table_name = 'runs_wide'"
    assert rows(writable_copy, kind) == [("VIEW",)]
    assert rows(writable_copy, "select count(*) from runs_wide_all") == [(27,)]


def test_a_broken_view_file_is_named_even_when_other_views_read_it(
    writable_copy: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    folder = tmp_path / "sql"
    folder.mkdir()
    (folder / "a_reader.sql").write_text("select * from z_broken\n")
    (folder / "z_broken.sql").write_text("select no_such_function(run_id) from runs\n")
    (folder / "fine.sql").write_text("with final as (select run_id from runs) select * from final")
    with pytest.raises(JobFailed, match=r"view z_broken \(sql/z_broken.sql\) cannot be created"):
        create_views(writable_copy, folder=folder)
    assert rows(writable_copy, "select count(*) from fine") == [(27,)]


@pytest.mark.pure
def test_metric_direction_overrides_ignore_case() -> None:
    directions = ViewSettings(metric_directions={"LOSS": True, "Val_F1": False}).directions()
    assert (directions["loss"], directions["val_f1"]) == (True, False)
    assert "LOSS" not in directions


# --- settings applied at read time -------------------------------------------------


def test_config_primary_metric_wins_over_tag_and_rule_on_a_read_only_connection(
    con: duckdb.DuckDBPyConnection, store: StoreFacts
) -> None:
    exp, ids = store.experiment_ids, store.run_ids
    apply_settings(
        con,
        ViewSettings(
            primary_metrics={"rule_*": "r2", "regress?on": "rmse", "misc": "custom_thing"},
        ),
    )
    chosen = {row[1]: row[2:5] for row in rows(con, "select * from experiment_primary_metric")}
    assert chosen["rule_based"] == ("r2", True, "config")  # over the rule's val_loss
    assert chosen["regression"] == ("rmse", False, "config")
    assert chosen["classification"] == ("accuracy", True, "tag")
    assert chosen["misc"] == ("custom_thing", None, "config")  # no known direction
    board = {row[0]: row for row in rows(con, "select * from leaderboard")}
    assert board[exp["rule_based"]][4:7] == (ids["rule_a"], "rule-a", 0.5)
    assert board[exp["rule_based"]][10:12] == ("config", 1)
    # experiments with runs but no leaderboard row, each with its reason
    assert rows(
        con, "select experiment_name, runs, metric_key, reason from unranked_experiments"
    ) == [("Default", 1, None, "no_metric"), ("misc", 5, "custom_thing", "no_direction")]
    # an exact name wins over a glob; the stored settings are untouched
    apply_settings(con, ViewSettings(primary_metrics={"rule_*": "r2", "rule_based": "val_loss"}))
    assert rows(
        con, "select metric_key from experiment_primary_metric where experiment_name = 'rule_based'"
    ) == [("val_loss",)]
    con.execute("drop table temp.primary_metric_choices")
    assert rows(con, "select count(*) from primary_metric_choices") == [(0,)]


def test_zombie_ignore_globs_leave_experiments_out_of_zombie_runs(
    con: duckdb.DuckDBPyConnection, store: StoreFacts
) -> None:
    apply_settings(con, ViewSettings(zombie_after_hours=0.5, zombie_ignore=["mi?c"]))
    assert rows(con, "select run_name, kind, is_ignored from stuck_runs") == [
        ("zombie", "zombie", True),
        ("fresh", "zombie", True),
    ]
    assert rows(con, "select count(*) from zombie_runs") == [(0,)]


@pytest.mark.pure
def test_glob_to_like_escapes_like_wildcards() -> None:
    assert glob_to_like("CIFAR*_v?") == "CIFAR%\\_v_"
    assert glob_to_like("100%") == "100\\%"
