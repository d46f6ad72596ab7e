"""Every source equals MLflow's own listing, on every store shape it can read.

One contract for the extract's sources (etl/extract/source.py): the warehouse a source
builds holds exactly the experiments, runs, params, latest metrics, tags, metric history,
dataset inputs and model outputs that MlflowClient lists (tests/oracle.py), full and
incremental, and the store is never written. A new source is one more name in SOURCES
(its `via` value) and, where it reads only some stores, a line in `reads`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput

from etl.refresh import ExtractOptions, run_extract
from tests.conftest import (
    LONG_TAG,
    MlflowServer,
    StoreFacts,
    build_rich_store,
    log_run,
    start_mlflow_server,
)
from tests.mysql import MysqlServer, mysql  # noqa: F401  (a fixture)
from tests.oracle import Rows, mlflow_rows, warehouse_rows
from tests.perf.make_store import GeneratedStore
from tests.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)
from tests.store_shapes import (  # noqa: F401  (fixtures)
    generated_store,
    my_rich_store,
    pg_rich_store,
    rich_store_in,
)
from tests.test_entities import CONTEXT, EntityStore, build_entity_store
from tests.test_incremental import apply_every_kind_of_change, table_contents

SOURCES = ("search_runs", "sql")
SHAPES = (
    "sqlite",
    "sqlite-entities",
    "sqlite-generated",
    "sqlite-orphans",
    "postgres-psycopg",
    "postgres-psycopg2",
    "mysql",
    "http",
    "http-postgres",
)
FLOAT_MAX = 1.7976931348623157e308
# search_runs pages this small: the generated store's 400 runs are 8 pages
PAGE_SIZE = 50


def reads(source: str, shape: str) -> bool:
    """`--via sql` reads a database's tables; a tracking server only answers MLflow's API."""
    return not (source == "sql" and shape.startswith("http"))


@dataclass
class Shape:
    uri: str
    check: str  # which facts of the store the contract also asserts by value
    facts: StoreFacts | None = None
    entities: EntityStore | None = None
    store_file: Path | None = None  # a SQLite store, whose bytes must not change


@pytest.fixture(scope="module")
def entity_store_shape(tmp_path_factory: pytest.TempPathFactory) -> EntityStore:
    return build_entity_store(tmp_path_factory.mktemp("entities"))


@pytest.fixture(scope="module")
def orphan_store(tmp_path_factory: pytest.TempPathFactory) -> StoreFacts:
    """The rich store plus params, tags and latest metrics of a run that does not exist
    (SQLite does not enforce MLflow's foreign keys): MLflow never lists them."""
    facts = build_rich_store(tmp_path_factory.mktemp("orphans"))
    con = sqlite3.connect(facts.uri.removeprefix("sqlite:///"))
    with con:
        con.execute("insert into params (key, value, run_uuid) values ('lost', 'x', 'orphan')")
        con.execute("insert into tags (key, value, run_uuid) values ('lost', 'x', 'orphan')")
        con.execute(
            "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "values ('lost', 1.0, 0, 0, 0, 'orphan')"
        )
    con.close()
    return facts


@pytest.fixture(scope="module")
def served_pg_rich_store(pg_rich_store: StoreFacts) -> Iterator[MlflowServer]:  # noqa: F811
    server = start_mlflow_server(pg_rich_store.uri)
    yield server
    server.stop()


@pytest.fixture
def shape(request: pytest.FixtureRequest) -> Shape:
    """The store of the shape named by the test's parameter (started only when asked)."""
    name: str = request.param
    if name == "sqlite":
        facts: StoreFacts = request.getfixturevalue("rich_store")
        return Shape(facts.uri, "rich", facts, Path(facts.uri.removeprefix("sqlite:///")))
    if name == "sqlite-orphans":
        facts = request.getfixturevalue("orphan_store")
        return Shape(facts.uri, "rich", facts, store_file=Path(facts.uri[len("sqlite:///") :]))
    if name == "sqlite-entities":
        made_entities: EntityStore = request.getfixturevalue("entity_store_shape")
        store_file = Path(made_entities.uri[len("sqlite:///") :])
        return Shape(made_entities.uri, "entities", entities=made_entities, store_file=store_file)
    if name == "sqlite-generated":
        made: GeneratedStore = request.getfixturevalue("generated_store")
        return Shape(made.uri, "generated", store_file=Path(made.uri[len("sqlite:///") :]))
    if name.startswith("postgres-"):
        facts = request.getfixturevalue("pg_rich_store")
        driver = name.removeprefix("postgres-")
        uri = facts.uri.replace("postgresql://", f"postgresql+{driver}://", 1)
        return Shape(uri, "rich", facts)
    if name == "mysql":
        facts = request.getfixturevalue("my_rich_store")
        return Shape(facts.uri, "rich", facts)
    if name == "http-postgres":
        server: MlflowServer = request.getfixturevalue("served_pg_rich_store")
        return Shape(server.uri, "rich", request.getfixturevalue("pg_rich_store"))
    assert name == "http"
    server = request.getfixturevalue("served_rich_store")
    return Shape(server.uri, "rich", request.getfixturevalue("rich_store"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract(uri: str, db: Path, source: str, mode: str = "full") -> int:
    """run_extract through `source`, metric history included; returns the runs it read
    (incremental: those it re-read; no overlap, so only what changed counts)."""
    options = ExtractOptions(
        via=source, metric_history=True, page_size=PAGE_SIZE, overlap=timedelta(0)
    )
    summary = run_extract(uri, db, mode, options, show_progress=False)  # type: ignore[arg-type]
    return summary.runs


@pytest.mark.parametrize(
    ("source", "shape"),
    [(source, shape) for source in SOURCES for shape in SHAPES if reads(source, shape)],
    indirect=["shape"],
)
def test_the_warehouse_equals_mlflows_listing(source: str, shape: Shape, tmp_path: Path) -> None:
    before = digest(shape.store_file) if shape.store_file else None
    db = tmp_path / "runs.duckdb"
    extract(shape.uri, db, source)
    got = warehouse_rows(db)
    assert got == mlflow_rows(shape.uri)
    assert_facts(got, shape)
    if shape.store_file is not None:
        assert digest(shape.store_file) == before
        folder = shape.store_file.parent
        assert not list(folder.glob("*-journal")) and not list(folder.glob("*-wal"))


def assert_facts(rows: Rows, shape: Shape) -> None:
    """The hard cases of each shape are really in what was compared."""
    if shape.check == "rich":
        assert shape.facts is not None
        assert_rich_store_values(rows, shape.facts)
    elif shape.check == "generated":
        assert len(rows["runs"]) == 400 and len(rows["metrics"]) == 2000
        assert len(rows["metric_history"]) > 2000
        assert any(", nan, " in row for row in rows["metrics"])
        assert any(f", {FLOAT_MAX!r}, " in row for row in rows["metrics"])
    else:
        assert shape.entities is not None
        a, b = shape.entities.run_ids["a"], shape.entities.run_ids["b"]
        assert rows["run_inputs"] == sorted(
            [
                repr((a, "diabetes", "d-test", "evaluation")),
                repr((a, "diabetes", "d-train", "training")),
                repr((b, "diabetes", "d-train", None)),
            ]
        )
        assert rows["run_outputs"] == [repr((a, shape.entities.model_ids["m1"], 1))]
        assert len(rows["datasets"]) == 2


def assert_rich_store_values(rows: Rows, facts: StoreFacts) -> None:
    runs = facts.run_ids
    assert len(rows["runs"]) == 10 and len(rows["experiments"]) == 4
    metrics = "\n".join(rows["metrics"])
    assert f"('{runs['odd_metrics']}', 'nan', nan," in metrics
    assert f"('{runs['odd_metrics']}', 'pinf', {FLOAT_MAX!r}," in metrics
    assert f"('{runs['odd_metrics']}', 'ninf', {-FLOAT_MAX!r}," in metrics
    assert f"('{runs['plain']}', 'loss', 0.2, 2," in metrics  # the latest of 3 points
    assert any(repr(LONG_TAG) in row for row in rows["tags"])
    assert any("日本語 run ✓" in row for row in rows["runs"])
    assert sum(f"'{facts.experiment_ids['gone']}', 'gone'" in r for r in rows["experiments"]) == 1
    assert sum("'deleted'" in row for row in rows["runs"]) == 2  # a run, a deleted experiment's
    assert len(rows["metric_history"]) == 8


# --- incremental: what changed, re-read, ends with the warehouse a full extract builds ----

WRITABLE = ("sqlite", "postgres", "mysql")


@pytest.fixture
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFacts:
    """A new rich store of the shape named by the parameter, for a test that changes it."""
    name: str = request.param
    if name == "sqlite":
        return build_rich_store(tmp_path / "store")
    server: PostgresCluster | MysqlServer = request.getfixturevalue(name)
    database = f"incremental_{request.node.callspec.params['source']}"
    return rich_store_in(server.new_database(database), tmp_path)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("fresh_store", WRITABLE, indirect=True)
def test_incremental_equals_full(source: str, fresh_store: StoreFacts, tmp_path: Path) -> None:
    facts = fresh_store
    uri, runs, experiments = facts.uri, facts.run_ids, facts.experiment_ids
    client = MlflowClient(uri)
    client.delete_run(runs["failed"])  # deleted before the first extract, restored after
    zombie = log_run(client, experiments["alpha"], "zombie", status="RUNNING")
    db = tmp_path / "incremental.duckdb"
    assert extract(uri, db, source) == 11
    time.sleep(0.01)

    apply_every_kind_of_change(facts, zombie)
    client.delete_experiment(experiments["alpha"])  # its runs become deleted

    # re-read: new run, plain (reopened), root + late child, unicode (deleted), failed
    # (restored), running (ended), zombie (RUNNING last time), odd_metrics (its experiment
    # deleted); not: child, grandchild, deleted, in_gone
    assert extract(uri, db, source, mode="incremental") == 9
    full = tmp_path / "full.duckdb"
    extract(uri, full, source)
    assert table_contents(db) == table_contents(full)
    assert warehouse_rows(db) == mlflow_rows(uri)
    con = duckdb.connect(str(db), read_only=True)
    status = con.execute("select status from runs where run_id = ?", [zombie]).fetchone()
    stage = con.execute(
        "select lifecycle_stage from runs where run_id = ?", [runs["unicode"]]
    ).fetchone()
    modes = con.execute("select mode from extract_log order by extract_id").fetchall()
    con.close()
    assert status == ("KILLED",) and stage == ("deleted",)
    assert modes == [("full",), ("incremental",)]


@pytest.mark.parametrize("source", SOURCES)
def test_incremental_reads_new_inputs_and_outputs(source: str, tmp_path: Path) -> None:
    store = build_entity_store(tmp_path / "store")
    client = MlflowClient(store.uri)
    db = tmp_path / "incremental.duckdb"
    extract(store.uri, db, source)
    time.sleep(0.01)
    late = log_run(client, store.experiment_ids["models"], "late")
    fresh = Dataset("diabetes", "d-new", "code", '{"file": "z.csv"}', None, None)
    client.log_inputs(late, datasets=[DatasetInput(fresh, [InputTag(CONTEXT, "training")])])
    client.log_outputs(late, [LoggedModelOutput(store.model_ids["m2"], 3)])

    assert extract(store.uri, db, source, mode="incremental") == 1
    got = warehouse_rows(db)
    assert got == mlflow_rows(store.uri)
    assert len(got["datasets"]) == 3 and len(got["run_outputs"]) == 2
