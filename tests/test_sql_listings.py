"""The listings read by SQL (etl/extract/sql_listings.py): logged models, the registry and
traces with their assessments equal MlflowClient's listings (entities.entity_records) on
every store MLflow can read, a `--via sql` extract of them imports no MLflow, and no query
of the reader names a table outside store_shape.READ_TABLES (the secrets never)."""

from __future__ import annotations

import ast
import contextlib
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from etl.extract import entities, sql_listings, sql_store, store_shape
from etl.extract.reader import Records
from etl.extract.sql_store import StoreSnapshot, open_snapshot
from etl.schema import DEFAULT_WORKSPACE, stamp_workspace
from tests.mysql import MysqlServer, mysql  # noqa: F401  (a fixture)
from tests.oracle import mismatches as table_mismatches
from tests.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from tests.test_entities import (
    EntityStore,
    build_entity_store,
    fluent_api,
    log_entity_store,
    log_trace,
    warehouse_tables,
)

READER_MODULES = (sql_store, sql_listings)
# the databases' own catalogs, which the reader asks for a table's columns
CATALOGS = {"pg_attribute", "information_schema.columns", "pragma_table_info"}
SECRET_TABLES = ("secrets", "webhooks", "jobs", "endpoints", "secret")


def add_edge_cases(store: EntityStore) -> None:
    """What the listings leave out or change: a prompt (with a version alias), a deleted
    model version (that had an alias), a deleted logged model, an overridden feedback, and
    a deleted experiment with a logged model and a trace."""
    client = MlflowClient(store.uri)
    with fluent_api(store.uri):
        mlflow.genai.register_prompt("greeting", "Hello {{name}}", tags={"team": "x"})
        mlflow.genai.register_prompt("greeting", "Hi {{name}}!")
        mlflow.genai.set_prompt_alias("greeting", "production", 1)
        first = store.trace_ids[0]
        correct = next(a for a in client.get_trace(first).info.assessments if a.name == "correct")
        mlflow.override_feedback(
            trace_id=first, assessment_id=correct.assessment_id, value=False, rationale="no"
        )
    client.delete_model_version("churn", "1")  # the alias challenger pointed at it
    client.delete_logged_model(store.model_ids["m2"])
    gone = client.create_experiment("gone")
    store.model_ids["m4"] = client.create_logged_model(gone, "old").model_id
    log_trace(store, gone, tokens=1)
    client.delete_experiment(gone)


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory: pytest.TempPathFactory) -> EntityStore:
    """build_entity_store's store and add_edge_cases, on SQLite: read only."""
    folder = tmp_path_factory.mktemp("edge")
    store = build_entity_store(folder)
    with contextlib.chdir(folder):
        add_edge_cases(store)
    return store


def entity_store_in(uri: str, folder: Path) -> EntityStore:
    """build_entity_store's store and add_edge_cases in the empty database at `uri`."""
    MlflowClient(uri).search_experiments()  # creates the schema
    with contextlib.chdir(folder):
        store = log_entity_store(uri)
        add_edge_cases(store)
    return store


# --- the comparison ---------------------------------------------------------------------


def table_rows(records: Records) -> dict[str, list[str]]:
    """table -> its rows, each a repr (NaN-safe: repr(nan) equals itself), sorted."""
    return {
        table: sorted(map(repr, zip(*columns.values(), strict=True)))
        for table, columns in records.items()
    }


def by_sql(uri: str) -> dict[str, list[str]]:
    with open_snapshot(uri) as snapshot:
        ids = snapshot.experiment_records()["experiments"]["experiment_id"]
        return table_rows(sql_listings.listing_records(snapshot, list(ids)))


def by_mlflow(uri: str) -> dict[str, list[str]]:
    with open_snapshot(uri) as snapshot:
        ids = snapshot.experiment_records()["experiments"]["experiment_id"]
    listed = entities.entity_records(MlflowClient(uri), uri, list(ids))
    return table_rows(stamp_workspace(listed, DEFAULT_WORKSPACE))  # as ApiSource does


def mismatches(expected: dict[str, list[str]], got: dict[str, list[str]]) -> dict[str, Any]:
    assert set(got) == set(entities.LISTED_TABLES)
    return table_mismatches(expected, got)


def sizes(tables: dict[str, list[str]]) -> dict[str, int]:
    return {table: len(rows) for table, rows in tables.items()}


ENTITY_SIZES = {
    "logged_models": 3,
    "logged_model_params": 1,
    "logged_model_tags": 1,
    "logged_model_metrics": 3,
    "registered_models": 2,
    "registered_model_tags": 1,
    "model_versions": 4,
    "model_version_tags": 1,
    "model_aliases": 2,
    "prompts": 0,
    "prompt_tags": 0,
    "prompt_versions": 0,
    "prompt_aliases": 0,
    "traces": 4,
    "trace_assessments": 4,
    "trace_tags": 12,
    "trace_runs": 1,
    "trace_model_usage": 0,
    "issues": 0,
    # no evaluation dataset: tests/test_eval_datasets.py has a store with them
    "evaluation_datasets": 0,
    "evaluation_dataset_tags": 0,
    "evaluation_dataset_experiments": 0,
}
# add_edge_cases: m2 deleted, m4 added; churn 1 deleted with its alias; the prompt left out
# of the model tables, in the prompt tables (its tag and MLflow's experiment link, two
# versions, one alias); a trace in the deleted experiment; the overriding feedback next to
# the overridden one
EDGE_SIZES = ENTITY_SIZES | {
    "logged_model_metrics": 1,
    "model_versions": 3,
    "model_aliases": 1,
    "prompts": 1,
    "prompt_tags": 2,
    "prompt_versions": 2,
    "prompt_aliases": 1,
    "traces": 5,
    "trace_assessments": 5,
    "trace_tags": 15,
}


def test_the_entity_store_equals_mlflows_listing(tmp_path: Path) -> None:
    store = build_entity_store(tmp_path)
    expected = by_mlflow(store.uri)
    assert sizes(expected) == ENTITY_SIZES
    assert mismatches(expected, by_sql(store.uri)) == {}


def test_prompts_deleted_versions_and_overridden_feedback_equal_mlflows_listing(
    edge_store: EntityStore,
) -> None:
    expected = by_mlflow(edge_store.uri)
    assert sizes(expected) == EDGE_SIZES
    got = by_sql(edge_store.uri)
    assert mismatches(expected, got) == {}
    # the store holds what the listings leave out
    con = sqlite3.connect(f"file:{edge_store.uri.removeprefix('sqlite:///')}?mode=ro", uri=True)
    try:
        prompt_versions = con.execute(
            "select count(*) from model_versions where name = 'greeting'"
        ).fetchone()
        deleted = con.execute(
            "select count(*) from model_versions where current_stage = 'Deleted_Internal'"
        ).fetchone()
        invalid = con.execute("select count(*) from assessments where not valid").fetchone()
    finally:
        con.close()
    assert (prompt_versions, deleted, invalid) == ((2,), (1,), (1,))
    assert not any("greeting" in row for row in got["registered_models"] + got["model_aliases"])


def test_token_usage_of_a_store_older_than_the_token_columns_comes_from_metadata(
    tmp_path: Path,
) -> None:
    """Before MLflow 3.17 (75868b020152) token usage was the trace's metadata
    `mlflow.trace.tokenUsage`: the store as that migration found it reads the same."""
    store = build_entity_store(tmp_path)
    expected = by_mlflow(store.uri)
    path = store.uri.removeprefix("sqlite:///")
    con = sqlite3.connect(path)
    with con:
        con.execute(
            "insert into trace_request_metadata (request_id, key, value) "
            "select request_id, 'mlflow.trace.tokenUsage', json_object('input_tokens', "
            "input_tokens, 'output_tokens', output_tokens, 'total_tokens', total_tokens) "
            "from trace_info where total_tokens is not null"
        )
        con.execute("update trace_info set input_tokens = 7, output_tokens = 7, total_tokens = 7")
    con.close()
    with open_snapshot(store.uri) as snapshot:
        snapshot.parts = snapshot.parts - {sql_listings.TRACE_TOKEN_COLUMNS}
        ids = snapshot.experiment_records()["experiments"]["experiment_id"]
        got = table_rows(sql_listings.listing_records(snapshot, list(ids)))
    assert mismatches(expected, got) == {}


def test_postgres_equals_mlflows_listing(
    postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = entity_store_in(postgres.new_database("listings"), tmp_path)
    expected = by_mlflow(store.uri)
    assert sizes(expected) == EDGE_SIZES
    assert mismatches(expected, by_sql(store.uri)) == {}


def test_mysql_equals_mlflows_listing(
    mysql: MysqlServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = entity_store_in(mysql.new_database("listings"), tmp_path)
    expected = by_mlflow(store.uri)
    assert sizes(expected) == EDGE_SIZES
    assert mismatches(expected, by_sql(store.uri)) == {}


def test_registered_models_of_another_workspace_are_read_with_it(tmp_path: Path) -> None:
    """A registry in two workspaces (the fraud model moved to 'team' in every registry
    table, as MLflow's workspace migration keys them): each row keeps its workspace,
    and the rows are otherwise those of the one-workspace store."""
    store = build_entity_store(tmp_path)
    before = by_sql(store.uri)
    con = sqlite3.connect(store.uri.removeprefix("sqlite:///"))
    with con:
        for table in REGISTRY_TABLES_IN_STORE:
            con.execute(f"update {table} set workspace = 'team' where name = 'fraud'")
    con.close()
    after = by_sql(store.uri)
    for table in ("registered_models", "model_versions", "model_aliases"):
        moved = [row.replace("'team')", "'default')") for row in after[table]]
        assert sorted(moved) == before[table], table
    assert [row for row in after["registered_models"] if row.endswith("'team')")] == [
        row.replace("'default')", "'team')")
        for row in before["registered_models"]
        if row.startswith("('fraud'")
    ]


REGISTRY_TABLES_IN_STORE = (
    "registered_models",
    "model_versions",
    "registered_model_tags",
    "model_version_tags",
    "registered_model_aliases",
)


# --- no MLflow --------------------------------------------------------------------------


def test_a_via_sql_extract_of_models_registry_and_traces_imports_no_mlflow(
    edge_store: EntityStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    program = (
        "import sys; from pathlib import Path; "
        "from etl.refresh import ExtractOptions, run_extract; "
        f"[run_extract({edge_store.uri!r}, Path({str(db)!r}), mode, ExtractOptions(via='sql'), "
        "show_progress=False) for mode in ('full', 'incremental')]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
    with open_snapshot(edge_store.uri) as snapshot:
        ids = snapshot.experiment_records()["experiments"]["experiment_id"]
    listed = entities.entity_records(MlflowClient(edge_store.uri), edge_store.uri, list(ids))
    expected = {
        table: Counter(zip(*columns.values(), strict=True)) for table, columns in listed.items()
    }
    assert warehouse_tables(db, entities.LISTED_TABLES) == expected


# --- the tables the reader names ---------------------------------------------------------

_NAMED = re.compile(r"\b(?:from|join)\s+([A-Za-z_][\w.]*)", re.IGNORECASE)


def named_tables(sql: str) -> set[str]:
    return {name.lower() for name in _NAMED.findall(sql)}


def sql_texts(module: Any) -> list[str]:
    """Every string in the module's code that holds a query (docstrings left out); an
    f-string with `{}` for each of its values."""
    tree = ast.parse(Path(module.__file__).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    parts = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append(
                "".join(
                    str(part.value) if isinstance(part, ast.Constant) else "{}"
                    for part in node.values
                )
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | parts
        ):
            texts.append(node.value)
    return [text for text in texts if re.search(r"\bselect\b", text, re.IGNORECASE)]


def test_no_query_in_the_readers_code_names_a_table_outside_the_shape() -> None:
    assert not set(SECRET_TABLES) & store_shape.READ_TABLES
    texts = [text for module in READER_MODULES for text in sql_texts(module)]
    assert len(texts) > 20
    named = set().union(*map(named_tables, texts))
    assert named - CATALOGS <= store_shape.READ_TABLES, named - store_shape.READ_TABLES
    assert {"trace_info", "assessments", "registered_model_aliases", "runs"} <= named


def test_no_query_the_reader_runs_names_a_table_outside_the_shape(
    edge_store: EntityStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    chunks = sql_store._SqliteSource.chunks

    def recorded(self: Any, sql: str, params: Any) -> Iterator[Any]:
        ran.append(sql)
        return chunks(self, sql, params)

    monkeypatch.setattr(sql_store._SqliteSource, "chunks", recorded)
    with open_snapshot(edge_store.uri) as snapshot:
        read_everything(snapshot)
    named = set().union(*map(named_tables, ran))
    assert named - CATALOGS <= store_shape.READ_TABLES, named - store_shape.READ_TABLES
    assert {"logged_model_metrics", "model_version_tags", "trace_request_metadata"} <= named


def read_everything(snapshot: StoreSnapshot) -> None:
    ids = list(snapshot.experiment_records()["experiments"]["experiment_id"])
    run_ids = [
        run_id
        for _, records in snapshot.run_records(None, metric_history=True)
        for run_id in records["runs"]["run_id"]
    ]
    list(snapshot.run_records(run_ids, metric_history=True))
    list(snapshot.history_records(run_ids))
    snapshot.changed_run_ids(0, set(), set())
    assert snapshot.has_listed_entities()
    sql_listings.listing_records(snapshot, ids)
