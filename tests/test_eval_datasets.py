"""Evaluation datasets and logged-model inputs in the warehouse (issue #24).

- evaluation_datasets, evaluation_dataset_tags and evaluation_dataset_experiments equal
  what MLflow lists: search_datasets, the records it loads for each dataset, and
  get_dataset_experiment_ids;
- run_model_inputs equals get_run's RunInputs.model_inputs for every run search_runs lists
  (deleted runs too), and an incremental extract replaces a run's rows.

Through both sources (search_runs and --via sql, which imports no MLflow) and over a real
`mlflow server`, 0 mismatches, and both sources build the same tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient

from etl.refresh import ExtractOptions, run_extract
from tests.conftest import start_mlflow_server
from tests.genai_store import EMPTY, GOLDEN, EvaluationStore, build_evaluation_store
from tests.oracle import (
    EVALUATION_DATASET_TABLES,
    evaluation_dataset_rows,
    mismatches,
    run_model_input_rows,
    warehouse_rows,
)
from tests.test_entities import fluent_api

SOURCES = ("search_runs", "sql")
TABLES = (*EVALUATION_DATASET_TABLES, "run_model_inputs")


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> EvaluationStore:
    return build_evaluation_store(tmp_path_factory.mktemp("evaluation"))


@pytest.fixture(scope="module")
def warehouses(
    evaluation: EvaluationStore, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("warehouses")
    built = {}
    for source in SOURCES:
        built[source] = extract(evaluation.genai.uri, folder / f"{source}.duckdb", source)
    return built


def extract(uri: str, db: Path, source: str, mode: str = "full") -> Path:
    run_extract(uri, db, mode, ExtractOptions(via=source), show_progress=False)  # type: ignore[arg-type]
    return db


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def expected_rows(uri: str) -> dict[str, list[str]]:
    return {**evaluation_dataset_rows(uri), "run_model_inputs": run_model_input_rows(uri)}


@pytest.mark.parametrize("source", SOURCES)
def test_every_table_equals_mlflows_listing(
    evaluation: EvaluationStore, warehouses: dict[str, Path], source: str
) -> None:
    expected = expected_rows(evaluation.genai.uri)
    assert {table: len(rows) for table, rows in expected.items()} == {
        "evaluation_datasets": 2,
        "evaluation_dataset_tags": 4,  # team, stage and MLflow's user tag on each
        "evaluation_dataset_experiments": 2,
        "run_model_inputs": 3,
    }
    assert mismatches(expected, warehouse_rows(warehouses[source], TABLES)) == {}


def test_both_sources_build_the_same_tables(warehouses: dict[str, Path]) -> None:
    by_api, by_sql = (warehouse_rows(warehouses[s], TABLES) for s in SOURCES)
    assert by_api == by_sql


@pytest.mark.parametrize("source", SOURCES)
def test_the_inventory_answers_what_a_team_asks(
    evaluation: EvaluationStore, warehouses: dict[str, Path], source: str
) -> None:
    db = warehouses[source]
    genai = evaluation.genai
    assert query(
        db,
        "select d.name, d.records, d.created_by, "
        "list(e.experiment_id order by e.experiment_id) filter (e.experiment_id is not null) "
        "from evaluation_datasets d "
        "left join evaluation_dataset_experiments e using (dataset_id) "
        "group by all order by d.name",
    ) == [
        (EMPTY, 0, "bob@example.com", None),
        (
            GOLDEN,
            2,
            "ann@example.com",
            sorted([genai.experiment_id, evaluation.offline_experiment_id]),
        ),
    ]
    runs = evaluation.evaluating_runs
    assert query(db, "select run_id, model_id from run_model_inputs order by run_id") == sorted(
        (run_id, genai.model_id) for run_id in runs.values()
    )


@pytest.mark.parametrize("source", SOURCES)
def test_an_incremental_extract_replaces_a_runs_model_inputs(source: str, tmp_path: Path) -> None:
    store = build_evaluation_store(tmp_path / "store")
    genai = store.genai
    db = extract(genai.uri, tmp_path / "runs.duckdb", source)
    client = MlflowClient(genai.uri)
    other = client.create_logged_model(genai.experiment_id, name="bot-v3").model_id
    with (
        fluent_api(genai.uri, genai.experiment_id),
        mlflow.start_run(run_name="scored both") as run,
    ):
        mlflow.log_metric("accuracy", 0.7, model_id=genai.model_id)
        mlflow.log_metric("accuracy", 0.9, model_id=other)
    extract(genai.uri, db, source, mode="incremental")
    assert query(
        db, "select model_id from run_model_inputs where run_id = ? order by 1", run.info.run_id
    ) == sorted([(genai.model_id,), (other,)])
    expected = expected_rows(genai.uri)
    assert len(expected["run_model_inputs"]) == 5
    assert mismatches(expected, warehouse_rows(db, TABLES)) == {}


def test_a_via_sql_extract_imports_no_mlflow(evaluation: EvaluationStore, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    uri = evaluation.genai.uri
    program = (
        "import sys; from pathlib import Path; "
        "from etl.refresh import ExtractOptions, run_extract; "
        f"run_extract({uri!r}, Path({str(db)!r}), 'full', ExtractOptions(via='sql'), "
        "show_progress=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
    assert mismatches(expected_rows(uri), warehouse_rows(db, TABLES)) == {}


def test_over_a_real_mlflow_server(evaluation: EvaluationStore, tmp_path: Path) -> None:
    """The default source over HTTP: search_datasets, the dataset experiment ids and
    get_run through the server's REST API give the same tables."""
    store = build_evaluation_store(tmp_path / "store")
    server = start_mlflow_server(store.genai.uri)
    try:
        db = extract(server.uri, tmp_path / "runs.duckdb", "search_runs")
    finally:
        server.stop()
    assert mismatches(expected_rows(store.genai.uri), warehouse_rows(db, TABLES)) == {}
