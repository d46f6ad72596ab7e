"""MLflow workspaces (3.10+, `mlflow server --enable-workspaces`), as far as runreport reads
them today (issue #24; the rest is listed in docs/contract.md): an extract through a
workspace server reads the workspace the client selects, equal to MLflow's own listing
with that workspace selected, and says in one warning line which workspaces it did not
read, instead of leaving them out silently; `--via sql` refuses such a store in one line.
Experiment ids are global across workspaces (one sequence), so a run's experiment_id
never names two experiments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.utils.workspace_context import WorkspaceContext

from tests.conftest import MlflowServer, log_run, new_store, run_cli, start_mlflow_server
from tests.oracle import mlflow_snapshot, warehouse_snapshot

TEAM = "team-a"
SHARED_MODEL = "shared-name"  # a registered model of the same name in both workspaces


def start_workspace_server(backend_uri: str) -> MlflowServer:
    """A real `mlflow server --enable-workspaces` on 127.0.0.1, answering /health."""
    return start_mlflow_server(backend_uri, options=("--enable-workspaces",))


@dataclass
class WorkspaceStore:
    backend_uri: str
    server: MlflowServer
    # workspace -> its experiment's id
    experiments: dict[str, str]


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkspaceStore]:
    """Two workspaces, each with an experiment, two runs and a registered model of the
    same name, written through the server with each workspace selected."""
    backend = new_store(tmp_path_factory.mktemp("workspaces"))
    server = start_workspace_server(backend)
    try:
        MlflowClient(server.uri).create_workspace(TEAM)
        experiments = {}
        for workspace in ("default", TEAM):
            with WorkspaceContext(workspace):
                client = MlflowClient(server.uri)
                experiments[workspace] = client.create_experiment(f"{workspace} experiment")
                for name in ("first", "second"):
                    log_run(client, experiments[workspace], name, metrics={"loss": 0.5})
                client.create_registered_model(SHARED_MODEL, description=workspace)
        yield WorkspaceStore(backend, server, experiments)
    finally:
        server.stop()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_experiment_ids_are_global_across_workspaces(workspaces: WorkspaceStore) -> None:
    ids = workspaces.experiments
    assert len(set(ids.values())) == 2
    with WorkspaceContext(TEAM):
        listed = MlflowClient(workspaces.server.uri).search_experiments()
    assert [e.experiment_id for e in listed] == [ids[TEAM]]


def test_an_extract_reads_the_selected_workspace_and_names_the_others(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--tracking-uri", workspaces.server.uri, "--db", str(db))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, result.output
    assert f"MLflow workspaces not read: 1 other than the selected one ({TEAM})" in warnings[0]
    assert query(db, "select warnings from extract_log") == [(1,)]
    # equal to MLflow's own listing with the default workspace selected
    expected = mlflow_snapshot(workspaces.server.uri)
    assert len(expected["experiments"]) == 2 and len(expected["runs"]) == 2  # Default + ours
    assert warehouse_snapshot(db) == expected
    assert query(db, "select name, description from registered_models") == [
        (SHARED_MODEL, "default")
    ]


def test_with_a_workspace_selected_an_extract_reads_that_one(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    env = {"MLFLOW_WORKSPACE": TEAM}
    result = run_cli("extract", "--tracking-uri", workspaces.server.uri, "--db", str(db), env=env)
    assert result.exit_code == 0, result.output
    assert "(default)" in result.output
    with WorkspaceContext(TEAM):
        expected = mlflow_snapshot(workspaces.server.uri)
    assert len(expected["experiments"]) == 1 and len(expected["runs"]) == 2
    assert warehouse_snapshot(db) == expected
    assert query(db, "select name, description from registered_models") == [(SHARED_MODEL, TEAM)]


def test_via_sql_refuses_a_store_with_other_workspaces_in_one_line(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    result = run_cli(
        "extract", "--via", "sql", "--tracking-uri", workspaces.backend_uri, "--db", str(db)
    )
    assert result.exit_code == 2, result.output
    assert "1 experiments live in MLflow workspaces other than 'default'" in result.output
    assert not db.exists()


def test_via_sql_refuses_evaluation_datasets_of_other_workspaces(tmp_path: Path) -> None:
    """Every experiment and model in 'default', one evaluation dataset in another
    workspace: `--via sql` would read what a default-workspace client does not see."""
    backend = new_store(tmp_path / "store")
    server = start_workspace_server(backend)
    try:
        MlflowClient(server.uri).create_workspace("team-b")
        with WorkspaceContext("team-b"):
            MlflowClient(server.uri).create_dataset(name="team-b questions")
        with WorkspaceContext("default"):
            assert MlflowClient(server.uri).search_datasets().to_list() == []
    finally:
        server.stop()
    db = tmp_path / "runs.duckdb"
    result = run_cli("extract", "--via", "sql", "--tracking-uri", backend, "--db", str(db))
    assert result.exit_code == 2, result.output
    assert "1 evaluation datasets live in MLflow workspaces other than 'default'" in result.output
    assert not db.exists()
