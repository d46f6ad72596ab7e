"""The audit trail (issue #24): model_versions gain who registered each version and its run
link, and `model_lineage` follows a version back to its logged model, source run, that
run's datasets and the metrics logged against the model, each step equal to what
MlflowClient answers for it (get_model_version, get_logged_model, get_run); the issues
MLflow detected in traces equal its search_issues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient

from etl.refresh import ExtractOptions, run_extract
from tests.genai_store import MODEL, RUN_LINK, build_genai_store, log_issues
from tests.oracle import issue_rows, warehouse_rows
from tests.test_entities import EntityStore, build_entity_store

SOURCES = ("search_runs", "sql")


@pytest.fixture(scope="module")
def entity_store(tmp_path_factory: pytest.TempPathFactory) -> EntityStore:
    return build_entity_store(tmp_path_factory.mktemp("entities"))


def extracted(uri: str, db: Path, source: str) -> Path:
    run_extract(uri, db, "full", ExtractOptions(via=source), show_progress=False)  # type: ignore[arg-type]
    return db


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def lineage_by_mlflow(
    uri: str, version_models: dict[tuple[str, str], str | None]
) -> list[tuple[Any, ...]]:
    """model_lineage's rows from MlflowClient: each version, its logged model (the one it
    was registered from: SQL stores return no model_id), the run (the version's, else the
    model's source run), that run's dataset inputs, and the logged model's metrics."""
    client = MlflowClient(uri)
    rows = []
    for v in client.search_model_versions(max_results=10_000):
        version = str(v.version)
        model_id = version_models[v.name, version]
        model = client.get_logged_model(model_id) if model_id else None
        run_id = v.run_id or (model.source_run_id if model else None)
        run = client.get_run(run_id) if run_id else None
        experiment_id = run.info.experiment_id if run else (model.experiment_id if model else None)
        inputs = sorted(
            (
                i.dataset.name,
                i.dataset.digest,
                {t.key: t.value for t in i.tags}.get("mlflow.data.context"),
            )
            for i in (run.inputs.dataset_inputs if run and run.inputs else [])
        )
        datasets = ", ".join(
            f"{name}@{digest}" + (f" ({context})" if context else "")
            for name, digest, context in inputs
        )
        base = (
            v.name,
            version,
            v.creation_timestamp,
            v.user_id or None,
            v.run_link or None,
            model_id,
            model.name if model else None,
            run_id,
            run.info.run_name if run else None,
            experiment_id,
            client.get_experiment(experiment_id).name if experiment_id else None,
            datasets or None,
        )
        metrics = [
            (m.key, m.value, m.step, m.run_id, m.dataset_name, m.dataset_digest)
            for m in (model.metrics or [] if model else [])
        ]
        rows += [base + metric for metric in metrics] or [base + (None,) * 6]
    return sorted(rows, key=repr)


@pytest.mark.parametrize("source", SOURCES)
def test_model_lineage_equals_what_mlflow_answers_for_each_step(
    entity_store: EntityStore, tmp_path: Path, source: str
) -> None:
    db = extracted(entity_store.uri, tmp_path / "runs.duckdb", source)
    expected = lineage_by_mlflow(entity_store.uri, entity_store.version_models)
    got = query(
        db,
        "select * exclude (workspace) replace (epoch_ms(registered_at) as registered_at) "
        "from model_lineage",
    )
    assert sorted(got, key=repr) == expected
    assert query(db, "select distinct workspace from model_lineage") == [("default",)]
    # churn 1 (ridge: run a's two datasets, one metric), churn 2 (lasso: run b, two metric
    # points on a dataset), churn 3 (a plain folder: no model, no run), fraud 1 (a model
    # with no source run)
    assert len(expected) == 5
    summary = query(
        db,
        "select name, version, logged_model_name, source_run_name, source_run_datasets, "
        "metric_key, metric_value, metric_dataset_digest from model_lineage "
        "order by name, version, metric_step",
    )
    assert summary == [
        (
            "churn",
            "1",
            "ridge",
            "train a",
            "diabetes@d-test (evaluation), diabetes@d-train (training)",
            "rmse",
            0.9,
            None,
        ),
        ("churn", "2", "lasso", "train b", "diabetes@d-train", "rmse", 0.8, "d-test"),
        ("churn", "2", "lasso", "train b", "diabetes@d-train", "rmse", 0.7, "d-test"),
        ("churn", "3", None, None, None, None, None, None),
        ("fraud", "1", "agent", None, None, None, None, None),
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_model_versions_keep_who_registered_them_and_their_run_link(
    tmp_path: Path, source: str
) -> None:
    store = build_genai_store(tmp_path / "store")
    db = extracted(store.uri, tmp_path / "runs.duckdb", source)
    v = MlflowClient(store.uri).get_model_version(MODEL, "1")
    assert (v.run_link, v.user_id) == (RUN_LINK, None)  # no auth: MLflow records no user
    assert query(db, "select name, version, user_id, run_link, run_id from model_versions") == [
        (MODEL, "1", None, RUN_LINK, store.source_run_id)
    ]
    assert query(
        db,
        "select logged_model_name, source_run_name, run_link, metric_key from model_lineage",
    ) == [("bot-v2", "logged in a run", RUN_LINK, None)]


@pytest.mark.parametrize("source", SOURCES)
def test_detected_issues_equal_mlflows_search_issues(tmp_path: Path, source: str) -> None:
    store = build_genai_store(tmp_path / "store")
    ids = log_issues(store)
    db = extracted(store.uri, tmp_path / "runs.duckdb", source)
    expected = issue_rows(store.uri)
    assert len(expected) == 3
    assert warehouse_rows(db, ("issues",))["issues"] == expected
    assert query(
        db,
        "select name, severity, status, categories, source_run_id, traces from issues "
        "order by traces desc",
    ) == [
        ("wrong refund policy", "high", "pending", '["correctness"]', store.eval_run_id, 3),
        ("slow answers", "low", "resolved", None, None, 1),
        ("tone", None, "pending", '["style", "brand"]', None, 0),
    ]
    references = query(
        db,
        "select name, count(*) from trace_assessments where assessment_type = 'issue' "
        "group by name order by 2 desc",
    )
    assert references == [(ids["wrong refund policy"], 3), (ids["slow answers"], 1)]
