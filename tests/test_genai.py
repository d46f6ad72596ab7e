"""GenAI in the warehouse (issue #24): traces with their name, session, user, logged model,
tokens and cost; assessments with their type, validity and overrides; trace tags, run
links and per-model usage. Every table equals MLflow's own listing through both sources,
and the views equal MLflow's own trace-metrics aggregation (the store's
query_trace_metrics, what /api/3.0/mlflow/traces/metrics answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from mlflow import MlflowClient
from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

from etl.refresh import ExtractOptions, run_extract
from tests.genai_store import BIG, CHEAP, GenaiStore, build_genai_store
from tests.oracle import GENAI_TABLES, genai_rows, mismatches, warehouse_rows

SOURCES = ("search_runs", "sql")


@pytest.fixture(scope="module")
def genai(tmp_path_factory: pytest.TempPathFactory) -> GenaiStore:
    return build_genai_store(tmp_path_factory.mktemp("genai"))


@pytest.fixture(scope="module")
def warehouses(genai: GenaiStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The store extracted once through each source."""
    folder = tmp_path_factory.mktemp("warehouses")
    built = {}
    for source in SOURCES:
        db = folder / f"{source}.duckdb"
        run_extract(genai.uri, db, "full", ExtractOptions(via=source), show_progress=False)  # type: ignore[arg-type]
        built[source] = db
    return built


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def trace_metrics(
    uri: str,
    experiment_id: str,
    view: MetricViewType,
    metric: str,
    aggregation: AggregationType,
    dimensions: list[str],
    filters: list[str] | None = None,
) -> dict[tuple[str, ...], float]:
    """MLflow's own aggregation: the tracking store's query_trace_metrics, which the
    server answers /api/3.0/mlflow/traces/metrics with."""
    store = MlflowClient(uri)._tracking_client.store
    points = store.query_trace_metrics(
        experiment_ids=[experiment_id],
        view_type=view,
        metric_name=metric,
        aggregations=[MetricAggregation(aggregation)],
        dimensions=dimensions,
        filters=filters,
    )
    return {
        tuple(point.dimensions[d] for d in dimensions): point.values[aggregation.value]
        for point in points
    }


@pytest.mark.parametrize("source", SOURCES)
def test_every_genai_table_equals_mlflows_listing(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    expected = genai_rows(genai.uri)
    assert {table: len(rows) for table, rows in expected.items()} == {
        "traces": 6,
        "trace_assessments": 8,
        "trace_tags": 24,
        "trace_runs": 4,
        "trace_model_usage": 7,
    }
    got = warehouse_rows(warehouses[source], GENAI_TABLES)
    assert mismatches(expected, got) == {}


def test_both_sources_build_the_same_genai_tables(warehouses: dict[str, Path]) -> None:
    by_api, by_sql = (warehouse_rows(warehouses[s], GENAI_TABLES) for s in SOURCES)
    assert by_api == by_sql


@pytest.mark.parametrize("source", SOURCES)
def test_pass_rate_counts_valid_feedback_as_mlflow_does(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    """The judge's "false" on alice_1 was overridden by a human's "true": MLflow counts the
    human's only, and never the expectations."""
    feedback = ["assessment.type = 'feedback'"]
    counts = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.ASSESSMENTS,
        "assessment_count",
        AggregationType.COUNT,
        ["assessment_name"],
        feedback,
    )
    means = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.ASSESSMENTS,
        "assessment_value",
        AggregationType.AVG,
        ["assessment_name"],
        feedback,
    )
    rows = query(
        warehouses[source],
        "select assessment_name, assessments, judged, passed, pass_rate, overridden "
        "from assessment_pass_rates order by assessment_name",
    )
    assert rows == [("correct", 3, 3, 2, pytest.approx(2 / 3), 1), ("relevance", 2, 0, 0, None, 0)]
    assert counts == {("correct",): 3, ("relevance",): 2}
    assert {name: n for name, n, *_ in rows} == {name: n for (name,), n in counts.items()}
    assert rows[0][4] == pytest.approx(means[("correct",)])
    # the old count, every assessment of the name: 2 of 4, and the expectation counted
    all_rows = query(
        warehouses[source],
        "select count(*), count(*) filter (where value = 'true') from trace_assessments "
        "where name = 'correct'",
    )
    assert all_rows == [(4, 2)]


@pytest.mark.parametrize("source", SOURCES)
def test_expectations_have_their_own_view(warehouses: dict[str, Path], source: str) -> None:
    assert query(
        warehouses[source],
        "select expectation_name, expectations, traces, distinct_values, source_types "
        "from assessment_expectations",
    ) == [("expected_answer", 2, 2, 2, "HUMAN")]
    overridden = query(
        warehouses[source],
        "select name, source_type, value, valid, rationale from trace_assessments "
        "where overrides is not null or not valid order by valid",
    )
    assert overridden == [
        ("correct", "LLM_JUDGE", "false", False, "x"),
        ("correct", "HUMAN", "true", True, "the judge missed the context"),
    ]


@pytest.mark.parametrize("source", SOURCES)
def test_cost_and_tokens_per_model_equal_mlflows_span_metrics(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    by_model = {
        model: (cost, inputs, outputs, calls, traces)
        for model, cost, inputs, outputs, calls, traces in query(
            warehouses[source],
            "select model_name, sum(cost), sum(input_tokens), sum(output_tokens), sum(calls), "
            "sum(traces) from genai_cost_per_day group by model_name",
        )
    }
    spans_cost = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.SPANS,
        "total_cost",
        AggregationType.SUM,
        ["span_model_name"],
    )
    assert set(by_model) == {CHEAP[0], BIG[0]}
    for (model,), cost in spans_cost.items():
        assert by_model[model][0] == pytest.approx(cost, rel=1e-12)
    # calls: alice_1 2, bob_1 1, bob_2 1, served 1 (cheap); alice_2, bob_2, in_run (big)
    assert {m: v[1:] for m, v in by_model.items()} == {
        CHEAP[0]: (198, 43, 5, 4),
        BIG[0]: (275, 54, 3, 3),
    }
    traces_tokens = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.TRACES,
        "input_tokens",
        AggregationType.SUM,
        [],
    )
    cached = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.TRACES,
        "cache_read_input_tokens",
        AggregationType.SUM,
        [],
    )
    assert query(
        warehouses[source],
        "select sum(input_tokens), sum(cache_read_input_tokens), sum(total_cost) from traces",
    ) == [(traces_tokens[()], cached[()], pytest.approx(sum(spans_cost.values()), rel=1e-12))]


@pytest.mark.parametrize("source", SOURCES)
def test_latency_and_errors_by_trace_name_equal_mlflows_trace_metrics(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    counts = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.TRACES,
        "trace_count",
        AggregationType.COUNT,
        ["trace_name", "trace_status"],
    )
    rows = query(
        warehouses[source],
        "select trace_name, traces, errors, latency_p50_ms, total_tokens "
        "from traces_by_name order by trace_name",
    )
    assert [(name, n, e) for name, n, e, *_ in rows] == [("chat", 4, 1), ("summarize", 2, 0)]
    assert counts == {("chat", "OK"): 3, ("chat", "ERROR"): 1, ("summarize", "OK"): 2}
    p50 = trace_metrics(
        genai.uri,
        genai.experiment_id,
        MetricViewType.TRACES,
        "latency",
        AggregationType.AVG,
        ["trace_name"],
    )
    assert set(p50) == {("chat",), ("summarize",)}


@pytest.mark.parametrize("source", SOURCES)
def test_traces_linked_to_an_evaluation_run_keep_it(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    t = genai.traces
    runs = dict(query(warehouses[source], "select trace_id, run_id from traces"))
    assert runs[t["alice_1"]] == runs[t["alice_2"]] == genai.eval_run_id
    assert runs[t["in_run"]] == genai.source_run_id  # its own run first
    assert runs[t["bob_1"]] is None
    links = query(warehouses[source], "select trace_id, run_id from trace_runs order by 1, 2")
    assert sorted(links) == sorted(
        [
            (t["alice_1"], genai.eval_run_id),
            (t["alice_2"], genai.eval_run_id),
            (t["in_run"], genai.eval_run_id),
            (t["in_run"], genai.source_run_id),
        ]
    )


@pytest.mark.parametrize("source", SOURCES)
def test_users_sessions_and_serving_model(
    genai: GenaiStore, warehouses: dict[str, Path], source: str
) -> None:
    db = warehouses[source]
    assert query(
        db,
        'select "user", traces, sessions, errors, total_tokens from genai_usage_per_user '
        'order by "user"',
    ) == [("alice", 2, 1, 0, 420), ("bob", 2, 2, 1, 130), ("carol", 2, 1, 0, 20)]
    assert query(
        db, "select session_id, users, traces, errors from genai_sessions order by session_id"
    ) == [("s1", "alice", 2, 0), ("s2", "bob", 1, 1), ("s3", "bob", 1, 0), ("s4", "carol", 2, 0)]
    assert query(db, "select trace_id, model_id from traces where model_id is not null") == [
        (genai.traces["served"], genai.model_id)
    ]
    assert query(
        db, "select count(*) from trace_tags where key = 'team' and value = 'support'"
    ) == [(6,)]
