"""MLflow workspaces (3.10+, `mlflow server --enable-workspaces`, issue #24): an extract
reads every workspace, through the server (each selected in turn) and `--via sql` alike;
per workspace the warehouse equals MLflow's own listing with that workspace selected. Names
repeat across workspaces (a registered model, a prompt, an experiment's name), so the
tables keyed by name carry the workspace; experiment ids are one sequence across
workspaces, so a run's experiment_id never names two experiments. A report or a team's
digest can be cut to workspaces."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.store.workspace.rest_store import WORKSPACES_ENDPOINT
from mlflow.utils.workspace_context import WorkspaceContext

from etl.schema import TABLES
from tests.conftest import (
    MlflowServer,
    free_port,
    log_run,
    new_store,
    run_cli,
    start_mlflow_server,
)
from tests.http_proxy import reverse_proxy
from tests.oracle import (
    PROMPT_TABLES,
    evaluation_dataset_rows,
    mismatches,
    mlflow_snapshot,
    prompt_rows,
    warehouse_rows,
    warehouse_snapshot,
)
from tests.smtp_servers import smtp_server
from tests.templates import isolated
from tests.test_job import write_config
from tests.test_job_safety import mail_section
from tests.test_report import parse, table_rows
from tests.test_team_digests import html_of

TEAM = "team-a"
WORKSPACES = ("default", TEAM)
SHARED_MODEL = "shared-name"  # a registered model of the same name in both workspaces
PROMPT = "greeting"  # a prompt of the same name in both workspaces
EXPERIMENT = "churn"  # an experiment of the same name in both workspaces


def start_workspace_server(backend_uri: str) -> MlflowServer:
    """A real `mlflow server --enable-workspaces` on 127.0.0.1, answering /health."""
    return start_mlflow_server(backend_uri, options=("--enable-workspaces",))


@dataclass
class WorkspaceStore:
    backend_uri: str
    server: MlflowServer
    # workspace -> its experiment's id
    experiments: dict[str, str]


def log_workspace(client: MlflowClient, workspace: str) -> str:
    """In the workspace the client selects: an experiment of the shared name with two runs,
    a registered model of the shared name with a version per run and the alias champion
    on the last, a prompt of the shared name with an alias, an evaluation dataset."""
    experiment_id = client.create_experiment(EXPERIMENT, tags={"team": workspace})
    runs = [
        log_run(client, experiment_id, f"{workspace} {name}", metrics={"loss": loss})
        for name, loss in (("first", 0.5), ("second", 0.25))
    ]
    client.create_registered_model(SHARED_MODEL, description=workspace)
    for run_id in runs:
        version = client.create_model_version(SHARED_MODEL, f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias(SHARED_MODEL, "champion", version.version)
    prompt = client.register_prompt(PROMPT, f"Hello from {workspace}, {{{{name}}}}")
    client.set_prompt_alias(PROMPT, "production", prompt.version)
    client.create_dataset(name=f"{workspace} questions", experiment_id=[experiment_id])
    return experiment_id


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkspaceStore]:
    """Two workspaces alike, written through the server with each selected (isolated
    from MLFLOW_* variables: a module fixture is built before a test's own isolation)."""
    folder = tmp_path_factory.mktemp("workspaces")
    with isolated(folder):
        backend = new_store(folder)
        server = start_workspace_server(backend)
        try:
            MlflowClient(server.uri).create_workspace(TEAM)
            experiments = {}
            for workspace in WORKSPACES:
                with WorkspaceContext(workspace):
                    experiments[workspace] = log_workspace(MlflowClient(server.uri), workspace)
        except BaseException:
            server.stop()
            raise
    try:
        yield WorkspaceStore(backend, server, experiments)
    finally:
        server.stop()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def extract(store: WorkspaceStore, db: Path, *args: str) -> None:
    uri = store.backend_uri if "sql" in args else store.server.uri
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db), *args)
    assert result.exit_code == 0, result.output
    assert " WARNING " not in result.output, result.output


def in_workspace(db: Path, table: str, workspace: str) -> list[str]:
    """The rows of a name-keyed table of one workspace, as oracle.warehouse_rows gives them."""
    scoped = db.parent / f"{db.stem}-{workspace}.duckdb"
    shutil.copy(db, scoped)
    con = duckdb.connect(str(scoped))
    try:
        con.execute(f"delete from {table} where workspace <> ?", [workspace])
    finally:
        con.close()
    return warehouse_rows(scoped, (table,))[table]


def unset_as_none(rows: dict[str, list[str]]) -> dict[str, list[str]]:
    """Over HTTP an unset text field arrives as '' (protobuf's default), from a SQL store
    as None; the warehouse keeps NULL for both (etl/extract/entities.py `_or_none`)."""
    return {
        table: sorted(row.replace(", ''", ", None") for row in found)
        for table, found in rows.items()
    }


def test_experiment_ids_are_global_across_workspaces(workspaces: WorkspaceStore) -> None:
    ids = workspaces.experiments
    assert len(set(ids.values())) == 2
    with WorkspaceContext(TEAM):
        listed = MlflowClient(workspaces.server.uri).search_experiments()
    assert [e.experiment_id for e in listed] == [ids[TEAM]]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_extract_reads_every_workspace_equal_to_mlflows_listing_in_each(
    workspaces: WorkspaceStore, workers: str, tmp_path: Path
) -> None:
    """Two workers: the worker processes read the workspace selected when they start."""
    db = tmp_path / "runs.duckdb"
    extract(workspaces, db, "--workers", workers)
    expected: dict[str, set[tuple[Any, ...]]] = {}
    for workspace in WORKSPACES:
        with WorkspaceContext(workspace):
            listed = mlflow_snapshot(workspaces.server.uri)
        ids = {row[0] for row in listed["experiments"]}
        assert query(db, f"select experiment_id from experiments where workspace = '{workspace}'")
        assert {
            row[0]
            for row in query(
                db, f"select experiment_id from experiments where workspace = '{workspace}'"
            )
        } == ids
        for table, rows in listed.items():
            expected.setdefault(table, set()).update(rows)
    assert len(expected["runs"]) == 4 and len(expected["experiments"]) == 3  # and Default
    assert warehouse_snapshot(db) == expected


def test_the_registry_and_prompts_of_each_workspace_equal_mlflows(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(workspaces, db)
    for workspace in WORKSPACES:
        with WorkspaceContext(workspace):
            prompts = prompt_rows(workspaces.server.uri)
            datasets = evaluation_dataset_rows(workspaces.server.uri)
        got = {table: in_workspace(db, table, workspace) for table in PROMPT_TABLES}
        assert mismatches(unset_as_none(prompts), got) == {}, workspace
        assert prompts["prompt_aliases"] == [repr((PROMPT, "production", "1"))]
        got = {"evaluation_datasets": in_workspace(db, "evaluation_datasets", workspace)}
        assert mismatches({"evaluation_datasets": datasets["evaluation_datasets"]}, got) == {}
    assert query(db, "select workspace, name, description from registered_models order by 1") == [
        ("default", SHARED_MODEL, "default"),
        (TEAM, SHARED_MODEL, TEAM),
    ]
    assert query(db, "select workspace, name, alias, version from model_aliases order by 1") == [
        ("default", SHARED_MODEL, "champion", "2"),
        (TEAM, SHARED_MODEL, "champion", "2"),
    ]
    assert query(
        db,
        "select workspace, count(*), count(distinct run_id) from model_versions group by 1 "
        "order by 1",
    ) == [("default", 2, 2), (TEAM, 2, 2)]
    # every version's run is a run of its own workspace's experiment
    assert query(
        db,
        "select count(*) from model_versions_registered v join experiments e "
        "on e.experiment_id = v.experiment_id where e.workspace <> v.workspace",
    ) == [(0,)]
    assert query(db, "select workspace, count(*) from run_overview group by 1 order by 1") == [
        ("default", 2),
        (TEAM, 2),
    ]


def test_via_sql_gives_the_same_warehouse_as_the_server(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    through_server, through_tables = tmp_path / "server.duckdb", tmp_path / "tables.duckdb"
    extract(workspaces, through_server)
    extract(workspaces, through_tables, "--via", "sql")
    for table in TABLES:
        sql = f"select * from {table} order by all"
        assert query(through_tables, sql) == query(through_server, sql), table
    assert query(through_tables, "select distinct workspace from prompts order by 1") == [
        ("default",),
        (TEAM,),
    ]


def test_a_report_cut_to_a_workspace_shows_its_experiments_only(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(workspaces, db)
    config = tmp_path / "runreport.toml"
    config.write_text(f'[report]\nworkspaces = ["{TEAM}"]\n')
    out = tmp_path / "reports"
    result = run_cli("report", "--config", str(config), "--db", str(db), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (report["experiments"], report["runs"], report["models"]["versions_registered"]) == (
        1,
        2,
        2,
    )
    whole = tmp_path / "whole"
    result = run_cli("report", "--db", str(db), "--out", str(whole))
    assert result.exit_code == 0, result.output
    report = json.loads((whole / "report.json").read_text())
    assert (report["experiments"], report["runs"], report["models"]["versions_registered"]) == (
        3,
        4,
        4,
    )
    # the runs per user count per workspace: the whole report's table names it, the one of
    # one workspace does not need to
    # (runs created over REST without a user are MLflow's 'unknown')
    assert users_table(whole) == [["unknown", "default", "2"], ["unknown", TEAM, "2"]]
    assert users_table(out) == [["unknown", "2"]]
    # a misspelt workspace: an empty cut, said in one warning line
    misspelt = tmp_path / "misspelt"
    env = {"RUNREPORT_WORKSPACES": "team-b"}
    result = run_cli("report", "--db", str(db), "--out", str(misspelt), env=env)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "MLflow workspaces with no experiment" in warnings[0]
    assert "team-b (check report.workspaces" in warnings[0]
    assert json.loads((misspelt / "report.json").read_text())["runs"] == 0


def users_table(folder: Path) -> list[list[str]]:
    """User, [workspace,] runs of the report's runs-per-user table."""
    rows = table_rows(parse(folder / "index.html"), "runs_per_user")
    return [[cell.text().strip() for cell in row[:-3]] for row in rows]


def test_a_team_digest_by_workspace_mails_that_workspace_only(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    """`runreport run` over real SMTP: the leads get every workspace, the team its own (the
    experiment names are the same in both)."""
    port = free_port()
    digest = f'\n[[mail.digests]]\nto = ["team-a@example.com"]\nworkspaces = ["{TEAM}"]\n'
    config = write_config(tmp_path, workspaces.server.uri, mail_section(port) + digest)
    with smtp_server(port) as smtp:
        result = run_cli("run", "--config", str(config))
        assert result.exit_code == 0, result.output
    by_recipient = {tuple(mail.rcpt_tos): mail.message() for mail in smtp.received}
    assert sorted(by_recipient) == [("lead@example.com",), ("team-a@example.com",)]
    lead = html_of(by_recipient["lead@example.com",])
    team = html_of(by_recipient["team-a@example.com",])
    # each workspace's best run (the lower loss) leads its experiment's leaderboard
    assert "default second" in lead and f"{TEAM} second" in lead
    assert f"{TEAM} second" in team
    assert "default second" not in team and "default first" not in team


def test_a_server_that_refuses_the_workspace_listing_is_read_in_the_selected_one(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    """Behind a gateway that forbids listing workspaces, the extract reads the workspace
    MLFLOW_WORKSPACE selects, equal to MLflow's listing there, and says in one warning
    line what it could not do."""
    db = tmp_path / "runs.duckdb"
    with reverse_proxy(workspaces.server.uri, (WORKSPACES_ENDPOINT,)) as proxy:
        result = run_cli(
            "extract", "--tracking-uri", proxy.uri, "--db", str(db), env={"MLFLOW_WORKSPACE": TEAM}
        )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, result.output
    assert (
        "MLflow workspaces not listed (PERMISSION_DENIED: Forbidden by the gateway): only the "
        f"selected workspace '{TEAM}' was read" in warnings[0]
    )
    assert query(db, "select warnings from extract_log") == [(1,)]
    with WorkspaceContext(TEAM):
        expected = mlflow_snapshot(workspaces.server.uri)
    assert warehouse_snapshot(db) == expected
    assert query(db, "select distinct workspace from experiments") == [(TEAM,)]


def test_an_incremental_extract_reads_every_workspace_and_alias_moves_keep_it(
    workspaces: WorkspaceStore, tmp_path: Path
) -> None:
    """A new run and a moved alias in one workspace. It changes the module's store, so it
    is the last test of this file (pytest runs a file's tests in the order written)."""
    db = tmp_path / "runs.duckdb"
    extract(workspaces, db)
    with WorkspaceContext(TEAM):
        client = MlflowClient(workspaces.server.uri)
        log_run(client, workspaces.experiments[TEAM], f"{TEAM} third", metrics={"loss": 0.1})
        client.set_registered_model_alias(SHARED_MODEL, "champion", "1")
    extract(workspaces, db, "--incremental")
    assert query(db, "select mode from extract_log order by extract_id") == [
        ("full",),
        ("incremental",),
    ]
    assert query(db, "select workspace, count(*) from run_overview group by 1 order by 1") == [
        ("default", 2),
        (TEAM, 3),
    ]
    moves = query(
        db,
        "select workspace, kind, name, alias, previous_version, version from alias_moves "
        "where change = 'moved'",
    )
    assert moves == [(TEAM, "model", SHARED_MODEL, "champion", "2", "1")]
