"""The prompt registry in the warehouse (issue #24): prompts, their tags, every version with
its template text and the aliases, equal to what MLflow's prompt API lists
(search_prompts, search_prompt_versions, get_prompt_version) through both sources; prompt alias
moves in model_alias_history beside the models' (kind 'prompt'); prompts no longer
vanish, and never leak into the model tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient

from etl.refresh import ExtractOptions, run_extract
from tests.genai_store import (
    CHAT_TEMPLATE,
    JUDGE_PROMPT,
    MODEL,
    PROMPT,
    GenaiStore,
    build_genai_store,
)
from tests.oracle import PROMPT_TABLES, mismatches, prompt_rows, warehouse_rows
from tests.test_entities import fluent_api

SOURCES = ("search_runs", "sql")


@pytest.fixture(scope="module")
def genai(tmp_path_factory: pytest.TempPathFactory) -> GenaiStore:
    return build_genai_store(tmp_path_factory.mktemp("prompts"))


@pytest.fixture(scope="module")
def warehouses(genai: GenaiStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("warehouses")
    built = {}
    for source in SOURCES:
        db = folder / f"{source}.duckdb"
        extract(genai.uri, db, source)
        built[source] = db
    return built


def extract(uri: str, db: Path, source: str) -> None:
    run_extract(uri, db, "full", ExtractOptions(via=source), show_progress=False)  # type: ignore[arg-type]


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("source", SOURCES)
def test_every_prompt_table_equals_mlflows_prompt_api(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    expected = prompt_rows(genai.uri)
    assert {table: len(rows) for table, rows in expected.items()} == {
        "prompts": 2,
        "prompt_tags": 3,  # "team" and the experiment link MLflow adds to each prompt
        "prompt_versions": 3,
        "prompt_aliases": 2,
    }
    got = warehouse_rows(warehouses[source], PROMPT_TABLES)
    assert mismatches(expected, got) == {}


def test_both_sources_build_the_same_prompt_tables(warehouses: dict[str, Path]) -> None:
    by_api, by_sql = (warehouse_rows(warehouses[s], PROMPT_TABLES) for s in SOURCES)
    assert by_api == by_sql


@pytest.mark.parametrize("source", SOURCES)
def test_templates_are_kept_and_prompts_stay_out_of_the_model_tables(
    warehouses: dict[str, Path], source: str
) -> None:
    db = warehouses[source]
    assert query(
        db,
        "select name, version, prompt_type, template, commit_message from prompt_versions "
        "order by name, version",
    ) == [
        (JUDGE_PROMPT, "1", "text", "Is {{answer}} correct?", None),
        (PROMPT, "1", "text", "Answer {{question}} politely.", "first wording"),
        (PROMPT, "2", "chat", json.dumps(CHAT_TEMPLATE), "as a chat"),
    ]
    assert query(db, "select name, alias, version from prompt_aliases order by alias") == [
        (PROMPT, "production", "1"),
        (PROMPT, "staging", "2"),
    ]
    assert query(db, "select name from registered_models") == [(MODEL,)]
    assert query(db, "select name, version from model_versions") == [(MODEL, "1")]
    assert query(db, "select name, alias from model_aliases") == [(MODEL, "production")]
    assert query(db, "select count(*) from model_version_tags") == [(0,)]


@pytest.mark.parametrize("source", SOURCES)
def test_prompt_alias_moves_join_the_model_alias_history(
    genai: GenaiStore, source: str, tmp_path: Path
) -> None:
    store = build_genai_store(tmp_path / "store")
    db = tmp_path / "runs.duckdb"
    extract(store.uri, db, source)
    with fluent_api(store.uri):
        mlflow.genai.set_prompt_alias(PROMPT, "production", 2)
        mlflow.genai.delete_prompt_alias(PROMPT, "staging")
        mlflow.genai.set_prompt_alias(JUDGE_PROMPT, "production", 1)
    resolved = MlflowClient(store.uri).get_prompt_version(PROMPT, "production")
    assert resolved is not None and resolved.version == 2
    extract(store.uri, db, source)
    moves = query(
        db,
        "select kind, name, alias, previous_version, version, change from alias_moves "
        "order by observed_at, kind, name, alias",
    )
    assert moves == [
        ("model", MODEL, "production", None, "1", "first_seen"),
        ("prompt", PROMPT, "production", None, "1", "first_seen"),
        ("prompt", PROMPT, "staging", None, "2", "first_seen"),
        ("prompt", JUDGE_PROMPT, "production", None, "1", "set"),
        ("prompt", PROMPT, "production", "1", "2", "moved"),
        ("prompt", PROMPT, "staging", "2", None, "removed"),
    ]


def test_a_warehouse_history_from_before_prompts_keeps_its_rows_as_models(
    genai: GenaiStore, tmp_path: Path
) -> None:
    """A warehouse written before prompts were read has no kind column: a full rebuild
    keeps its rows as the models' and starts the prompts' history."""
    db = tmp_path / "runs.duckdb"
    extract(genai.uri, db, "sql")
    con = duckdb.connect(str(db))
    try:
        con.execute("alter table model_alias_history drop column kind")
        con.execute("delete from model_alias_history where name <> ?", [MODEL])
        con.execute("update runreport_meta set value = '4' where key = 'schema_version'")
    finally:
        con.close()
    extract(genai.uri, db, "sql")
    assert query(db, "select kind, name, alias, change from alias_moves order by kind, alias") == [
        ("model", MODEL, "production", "first_seen"),
        ("prompt", PROMPT, "production", "first_seen"),
        ("prompt", PROMPT, "staging", "first_seen"),
    ]


def test_a_via_sql_extract_of_prompts_imports_no_mlflow(genai: GenaiStore, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    program = (
        "import sys; from pathlib import Path; "
        "from etl.refresh import ExtractOptions, run_extract; "
        f"run_extract({genai.uri!r}, Path({str(db)!r}), 'full', ExtractOptions(via='sql'), "
        "show_progress=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
    assert warehouse_rows(db, PROMPT_TABLES) == prompt_rows(genai.uri)
