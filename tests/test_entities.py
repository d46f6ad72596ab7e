"""MLflow 3's entities in the warehouse (issue #12): datasets, run inputs and outputs,
logged models, the model registry and traces, each table equal to MLflow's own listing.

The oracle is MLflow: every expected row below comes from MlflowClient's listings (or, for
a model version's logged model, from what the store was built with, since SQL and HTTP
stores return no model_id)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import (
    AssessmentSource,
    Dataset,
    DatasetInput,
    Expectation,
    InputTag,
    LoggedModelOutput,
    ViewType,
)
from mlflow.tracking import fluent

from etl.extract import entities
from etl.extract.entities import PageSizes
from etl.refresh import ExtractOptions, run_extract
from etl.schema import TABLES, WORKSPACE_COLUMN
from tests.conftest import log_run, new_store, run_cli, start_mlflow_server
from tests.oracle import GENAI_TABLES, PROMPT_TABLES, genai_rows, warehouse_rows
from tests.templates import copy_store, template

Rows = Counter[tuple[Any, ...]]
CONTEXT = "mlflow.data.context"
# the trace tables have their own oracle (tests/oracle.py genai_rows, tests/test_genai.py)
ENTITY_TABLES = tuple(
    table
    for table in ("datasets", "run_inputs", "run_outputs", *entities.LISTED_TABLES)
    if table not in (*GENAI_TABLES, *PROMPT_TABLES, "issues", *entities.EVALUATION_DATASET_TABLES)
)


@dataclass
class EntityStore:
    uri: str
    experiment_ids: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    model_ids: dict[str, str] = field(default_factory=dict)
    # (registered model, version) -> the logged model it was created from
    version_models: dict[tuple[str, str], str | None] = field(default_factory=dict)
    trace_ids: list[str] = field(default_factory=list)


@contextmanager
def fluent_api(uri: str, experiment_id: str | None = None) -> Iterator[None]:
    """MLflow's fluent API (and the registry, which resolves `models:/` sources through
    the global tracking URI) pointed at `uri`, reset afterwards."""
    mlflow.set_tracking_uri(uri)
    if experiment_id is not None:
        mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        mlflow.flush_trace_async_logging()
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        fluent._active_experiment_id = None


def register(store: EntityStore, client: MlflowClient, name: str, model: str | None) -> str:
    source = f"models:/{store.model_ids[model]}" if model else "file:///tmp/a-plain-folder"
    model_id = store.model_ids[model] if model else None
    with fluent_api(store.uri):
        version = str(client.create_model_version(name, source, model_id=model_id).version)
    store.version_models[(name, version)] = model_id
    return version


def log_trace(
    store: EntityStore, experiment_id: str, fail: bool = False, tokens: int | None = None
) -> str:
    with fluent_api(store.uri, experiment_id):
        try:
            with mlflow.start_span("answer") as span:
                if tokens is not None:
                    usage = {"input_tokens": tokens, "output_tokens": 2, "total_tokens": tokens + 2}
                    span.set_attribute("mlflow.chat.tokenUsage", usage)
                trace_id = span.trace_id
                if fail:
                    raise RuntimeError("no answer")
        except RuntimeError:
            pass
    store.trace_ids.append(trace_id)
    return trace_id


def build_entity_store(folder: Path) -> EntityStore:
    """Two experiments; runs with dataset inputs (with and without a context) and a model
    output; three logged models with params, tags and metrics (one on a dataset); two
    registered models with tags, four versions (one not from a logged model), version tags
    and two aliases; four traces (one an error, one linked to a run) with assessments. In a
    new SQLite store in `folder`: a copy of the session's template, built once by
    log_entity_store."""
    path, built = template("entities", lambda here: log_entity_store(new_store(here)))
    store = copy.deepcopy(built)
    store.uri = copy_store(path, folder)
    return store


def log_entity_store(uri: str) -> EntityStore:
    """build_entity_store's entities, logged through MLflow's API into the empty store."""
    store = EntityStore(uri)
    client = MlflowClient(store.uri)
    exp = store.experiment_ids
    exp["models"] = client.create_experiment("models")
    exp["agents"] = client.create_experiment("agents")
    runs = store.run_ids
    runs["a"] = log_run(client, exp["models"], "train a", metrics={"rmse": 0.9})
    runs["b"] = log_run(client, exp["models"], "train b", metrics={"rmse": 0.7})
    train = Dataset("diabetes", "d-train", "code", '{"file": "x.csv"}', '{"cols": 10}', "{}")
    test = Dataset("diabetes", "d-test", "local", '{"file": "y.csv"}', None, None)
    client.log_inputs(
        runs["a"],
        datasets=[
            DatasetInput(train, [InputTag(CONTEXT, "training")]),
            DatasetInput(test, [InputTag(CONTEXT, "evaluation")]),
        ],
    )
    client.log_inputs(runs["b"], datasets=[DatasetInput(train, [])])

    models = store.model_ids
    models["m1"] = client.create_logged_model(
        exp["models"], "ridge", runs["a"], {"team": "x"}, {"alpha": "0.5"}, "sklearn"
    ).model_id
    models["m2"] = client.create_logged_model(exp["models"], "lasso", runs["b"]).model_id
    models["m3"] = client.create_logged_model(exp["agents"], "agent").model_id
    client.log_metric(runs["a"], "rmse", 0.9, step=1, model_id=models["m1"])
    client.log_metric(
        runs["b"], "rmse", 0.8, step=0, model_id=models["m2"], dataset_name="diabetes",
        dataset_digest="d-test",
    )  # fmt: skip
    client.log_metric(
        runs["b"], "rmse", 0.7, step=1, model_id=models["m2"], dataset_name="diabetes",
        dataset_digest="d-test",
    )  # fmt: skip
    client.log_outputs(runs["a"], [LoggedModelOutput(models["m1"], 1)])
    client.finalize_logged_model(models["m1"], "READY")

    client.create_registered_model("churn", tags={"owner": "ana"}, description="Churn model")
    client.create_registered_model("fraud")
    register(store, client, "churn", "m1")
    register(store, client, "churn", "m2")
    register(store, client, "churn", None)
    register(store, client, "fraud", "m3")
    client.set_model_version_tag("churn", "2", "validated", "yes")
    client.set_registered_model_alias("churn", "champion", "2")
    client.set_registered_model_alias("churn", "challenger", "1")

    first = log_trace(store, exp["agents"], tokens=10)
    log_trace(store, exp["agents"], fail=True, tokens=4)
    log_trace(store, exp["agents"])
    with (
        fluent_api(store.uri, exp["models"]),
        mlflow.start_run(run_id=runs["a"]),
        mlflow.start_span("in a run") as span,
    ):
        store.trace_ids.append(span.trace_id)
    with fluent_api(store.uri):
        human = AssessmentSource("HUMAN", "ana")
        mlflow.log_feedback(trace_id=first, name="correct", value=True, source=human)
        mlflow.log_feedback(trace_id=first, name="relevance", value=0.75, source=human)
        mlflow.log_feedback(
            trace_id=store.trace_ids[1], name="correct", value=False,
            source=AssessmentSource("LLM_JUDGE", "judge"),
        )  # fmt: skip
        mlflow.log_assessment(
            trace_id=store.trace_ids[2],
            assessment=Expectation(name="expected", value="42", source=human),
        )
    return store


@pytest.fixture(scope="module")
def entity_store(tmp_path_factory: pytest.TempPathFactory) -> EntityStore:
    """build_entity_store's store, shared by this module's tests: read only."""
    return build_entity_store(tmp_path_factory.mktemp("entities"))


# --- the oracle: MLflow's listings -------------------------------------------------------


def _value(v: Any) -> str | None:
    return v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True)


def _enum(v: Any) -> Any:
    return getattr(v, "value", v)


def api_tables(uri: str, version_models: dict[tuple[str, str], str | None]) -> dict[str, Rows]:
    """Every entity table as MLflow lists it, times in epoch ms."""
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    t: dict[str, Rows] = {table: Counter() for table in ENTITY_TABLES}
    for run in client.search_runs(ids, run_view_type=ViewType.ALL, max_results=50_000):
        for di in run.inputs.dataset_inputs if run.inputs else []:
            d = di.dataset
            t["datasets"][(d.name, d.digest, d.source_type, d.source, d.schema, d.profile)] = 1
            context = {tag.key: tag.value for tag in di.tags}.get(CONTEXT)
            t["run_inputs"][(run.info.run_id, d.name, d.digest, context)] += 1
        for out in run.outputs.model_outputs if run.outputs else []:
            t["run_outputs"][(run.info.run_id, out.model_id, out.step)] += 1
    for m in client.search_logged_models(ids, max_results=1000):
        t["logged_models"][
            (
                m.model_id,
                m.experiment_id,
                m.name,
                m.source_run_id,
                _enum(m.status),
                m.model_type,
                m.creation_timestamp,
                m.last_updated_timestamp,
                m.artifact_location,
            )
        ] += 1
        t["logged_model_params"].update((m.model_id, k, v) for k, v in m.params.items())
        t["logged_model_tags"].update((m.model_id, k, v) for k, v in m.tags.items())
        t["logged_model_metrics"].update(
            (
                m.model_id,
                x.key,
                x.value,
                x.step,
                x.timestamp,
                x.run_id,
                x.dataset_name,
                x.dataset_digest,
            )
            for x in m.metrics or []
        )
    for rm in client.search_registered_models(max_results=1000):
        t["registered_models"][
            (rm.name, rm.description, rm.creation_timestamp, rm.last_updated_timestamp)
        ] += 1
        t["registered_model_tags"].update((rm.name, k, v) for k, v in rm.tags.items())
        t["model_aliases"].update((rm.name, a, str(v)) for a, v in rm.aliases.items())
    for v in client.search_model_versions(max_results=10_000):
        version = str(v.version)
        t["model_versions"][
            (
                v.name,
                version,
                v.source,
                v.run_id,
                version_models[v.name, version],
                v.status,
                v.current_stage,
                v.description,
                v.creation_timestamp,
                v.last_updated_timestamp,
                v.user_id,
                v.run_link,
            )
        ] += 1
        t["model_version_tags"].update((v.name, version, k, x) for k, x in v.tags.items())
    return t


def blank_as_null(tables: dict[str, Rows]) -> dict[str, Rows]:
    """Over HTTP an unset text field arrives as "" (protobuf's default); runreport stores
    NULL, as the SQL store returns it."""
    return {
        table: Counter({tuple(None if v == "" else v for v in row): n for row, n in rows.items()})
        for table, rows in tables.items()
    }


def warehouse_tables(db: Path, tables: tuple[str, ...] = ENTITY_TABLES) -> dict[str, Rows]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = {}
        for table in tables:
            columns = ", ".join(  # but the workspace, which MLflow's listings leave out
                f"epoch_ms({name})" if kind == "ms" else name
                for name, kind in TABLES[table]
                if name != WORKSPACE_COLUMN
            )
            found[table] = Counter(con.execute(f"select {columns} from {table}").fetchall())
        return found
    finally:
        con.close()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def extract(uri: str, db: Path, *flags: str) -> None:
    result = run_cli("extract", "--tracking-uri", uri, "--db", str(db), *flags)
    assert result.exit_code == 0, result.output


def assert_tables_equal(expected: dict[str, Rows], got: dict[str, Rows]) -> None:
    for table in expected:
        assert got[table] == expected[table], table


# --- tests -------------------------------------------------------------------------------


def test_every_table_equals_mlflows_listing_on_sqlite(
    entity_store: EntityStore, tmp_path: Path
) -> None:
    db = tmp_path / "runs.duckdb"
    extract(entity_store.uri, db)
    expected = api_tables(entity_store.uri, entity_store.version_models)
    assert_tables_equal(expected, warehouse_tables(db))
    # the store really holds what the comparison is about
    sizes = {table: sum(rows.values()) for table, rows in expected.items()}
    assert sizes == {
        "datasets": 2,
        "run_inputs": 3,
        "run_outputs": 1,
        "logged_models": 3,
        "logged_model_params": 1,
        "logged_model_tags": 1,
        "logged_model_metrics": 3,
        "registered_models": 2,
        "registered_model_tags": 1,
        "model_versions": 4,
        "model_version_tags": 1,
        "model_aliases": 2,
    }
    assert warehouse_rows(db, GENAI_TABLES) == genai_rows(entity_store.uri)
    versions = query(db, "select name, version, model_id from model_versions order by 1, 2")
    m = entity_store.model_ids
    assert versions == [
        ("churn", "1", m["m1"]),
        ("churn", "2", m["m2"]),
        ("churn", "3", None),
        ("fraud", "1", m["m3"]),
    ]
    assert query(db, "select context from run_inputs order by context nulls first") == [
        (None,),
        ("evaluation",),
        ("training",),
    ]
    assert query(db, "select run_id from traces where run_id is not null") == [
        (entity_store.run_ids["a"],)
    ]
    assert query(db, "select total_tokens from traces order by 1 nulls last") == [
        (6,),
        (12,),
        (None,),
        (None,),
    ]


def test_small_pages_read_the_same_rows(entity_store: EntityStore, tmp_path: Path) -> None:
    db = tmp_path / "paged.duckdb"
    run_extract(
        entity_store.uri,
        db,
        options=ExtractOptions(page_size=1, entity_page_sizes=PageSizes.all(1)),
    )
    expected = api_tables(entity_store.uri, entity_store.version_models)
    assert_tables_equal(expected, warehouse_tables(db))


def test_every_table_equals_mlflows_listing_over_http(
    entity_store: EntityStore, tmp_path: Path
) -> None:
    server = start_mlflow_server(entity_store.uri)
    try:
        db = tmp_path / "served.duckdb"
        run_extract(server.uri, db, options=ExtractOptions(entity_page_sizes=PageSizes(1, 2, 1, 2)))
        expected = blank_as_null(api_tables(server.uri, entity_store.version_models))
        got = warehouse_tables(db)
    finally:
        server.stop()
    assert_tables_equal(expected, got)
    # the server lists what the SQLite store holds
    assert_tables_equal(api_tables(entity_store.uri, entity_store.version_models), got)


def test_incremental_after_changes_equals_a_full_extract(tmp_path: Path) -> None:
    store = build_entity_store(tmp_path / "store")
    client = MlflowClient(store.uri)
    db, full_db = tmp_path / "inc.duckdb", tmp_path / "full.duckdb"
    extract(store.uri, db)

    run = log_run(client, store.experiment_ids["models"], "train c")
    client.log_inputs(
        run, datasets=[DatasetInput(Dataset("extra", "e1", "code", "{}"), [])]
    )  # a new dataset, from a run an incremental extract re-reads
    store.model_ids["m4"] = client.create_logged_model(
        store.experiment_ids["models"], "new", run
    ).model_id
    register(store, client, "churn", "m4")
    client.set_registered_model_alias("churn", "champion", "4")
    client.delete_model_version("churn", "3")
    client.delete_registered_model("fraud")
    client.set_registered_model_tag("churn", "stage", "prod")
    log_trace(store, store.experiment_ids["agents"], tokens=1)
    del store.version_models[("churn", "3")], store.version_models[("fraud", "1")]

    extract(store.uri, db, "--incremental")
    extract(store.uri, full_db, "--full")
    tables = (*ENTITY_TABLES, *(t for t in TABLES if t not in ENTITY_TABLES))
    assert warehouse_tables(db, tables) == warehouse_tables(full_db, tables)
    assert_tables_equal(api_tables(store.uri, store.version_models), warehouse_tables(db))
    assert query(db, "select distinct name from model_versions order by 1") == [("churn",)]
    assert query(db, "select version from model_versions order by 1") == [("1",), ("2",), ("4",)]
    assert query(db, "select name from datasets where name = 'extra'") == [("extra",)]
    assert query(db, "select mode from extract_log order by extract_id") == [
        ("full",),
        ("incremental",),
    ]


def test_alias_history_gains_one_row_per_change_and_survives_a_full_rebuild(
    tmp_path: Path,
) -> None:
    store = build_entity_store(tmp_path / "store")
    client = MlflowClient(store.uri)
    db = tmp_path / "runs.duckdb"
    history = "select name, alias, version from model_alias_history order by observed_at, alias"

    extract(store.uri, db)
    assert query(db, history) == [("churn", "challenger", "1"), ("churn", "champion", "2")]
    extract(store.uri, db, "--incremental")  # nothing moved: nothing added
    assert len(query(db, history)) == 2

    client.set_registered_model_alias("churn", "champion", "1")
    client.delete_registered_model_alias("churn", "challenger")
    extract(store.uri, db, "--full")
    assert query(db, history)[2:] == [("churn", "challenger", None), ("churn", "champion", "1")]

    client.set_registered_model_alias("churn", "champion", "3")
    extract(store.uri, db, "--incremental")
    assert query(db, history)[4:] == [("churn", "champion", "3")]
    moves = query(
        db,
        "select alias, previous_version, version, change from alias_moves "
        "order by observed_at, alias",
    )
    assert moves == [
        ("challenger", None, "1", "first_seen"),
        ("champion", None, "2", "first_seen"),
        ("challenger", "1", None, "removed"),
        ("champion", "2", "1", "moved"),
        ("champion", "1", "3", "moved"),
    ]


def test_views_over_the_entities(entity_store: EntityStore, tmp_path: Path) -> None:
    db = tmp_path / "runs.duckdb"
    extract(entity_store.uri, db)
    assert query(db, "select * exclude (first_used, last_used) from runs_per_dataset") == [
        ("diabetes", "d-train", "code", 2, 1, "training"),
        ("diabetes", "d-test", "local", 1, 1, "evaluation"),
    ]
    assert query(
        db, "select name, version, aliases from model_versions_registered order by 1, 2"
    ) == [
        ("churn", "1", "challenger"),
        ("churn", "2", "champion"),
        ("churn", "3", None),
        ("fraud", "1", None),
    ]
    # rmse is lower-is-better: m2's latest value (0.7 at step 1) beats m1's 0.9
    assert query(
        db, "select experiment_name, model_id, value, tied_models from best_logged_model"
    ) == [("models", entity_store.model_ids["m2"], 0.7, 1)]
    per_day = query(
        db,
        "select experiment_name, traces, errors, error_rate, total_tokens from traces_per_day "
        "order by experiment_name",
    )
    assert per_day == [("agents", 3, 1, 1 / 3, 18), ("models", 1, 0, 0.0, None)]
    assert query(
        db,
        "select assessment_name, assessments, judged, passed, pass_rate "
        "from assessment_pass_rates order by assessment_name",
    ) == [("correct", 2, 2, 1, 0.5), ("relevance", 1, 0, 0, None)]


@pytest.mark.pure
def test_a_store_without_a_listing_is_skipped_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_registry() -> entities.Records:
        raise NotImplementedError("this store has no model registry")

    with caplog.at_level("INFO", logger="runreport"):
        records = entities._or_skipped("the model registry", no_registry)
    assert all(not values for columns in records.values() for values in columns.values())
    assert [r.getMessage() for r in caplog.records] == [
        "the model registry: not supported by this store, skipped "
        "(this store has no model registry)"
    ]
