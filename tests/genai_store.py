"""A GenAI store built through MLflow's own API (mlflow 3.17), no network: traced local
functions stand for the LLM (their spans carry a model, a provider and token counts, and
MLflow prices them itself), sessions and users, tags, an LLM judge's feedback a human
overrides, an expectation, a numeric score, an error, a trace logged in a run and traces
linked to an evaluation run, a logged model serving traces, and a prompt with two versions
and an alias that moves.

`build_genai_store(folder)` copies the session's template (built once by
`log_genai_store`)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource

from tests.conftest import new_store
from tests.templates import copy_store, template
from tests.test_entities import fluent_api

JUDGE = AssessmentSource(source_type="LLM_JUDGE", source_id="judge-v1")
HUMAN = AssessmentSource(source_type="HUMAN", source_id="ann@example.com")
# models MLflow prices from its bundled table (checked: both give a cost offline)
CHEAP = ("gpt-4o-mini", "openai")
BIG = ("gpt-4o", "openai")


@dataclass
class GenaiStore:
    uri: str
    experiment_id: str = ""
    eval_run_id: str = ""
    source_run_id: str = ""
    model_id: str = ""
    # label -> trace id
    traces: dict[str, str] = field(default_factory=dict)
    overridden_id: str = ""  # the judge's feedback the human overrode


def _llm_call(model: tuple[str, str], input_tokens: int, output_tokens: int) -> str:
    @mlflow.trace(name="llm", span_type="LLM")
    def llm(question: str) -> str:
        span = mlflow.get_current_active_span()
        assert span is not None
        span.set_attribute("mlflow.llm.model", model[0])
        span.set_attribute("mlflow.llm.provider", model[1])
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        if model == BIG:  # a prompt cache hit on half the input
            usage["cache_read_input_tokens"] = input_tokens // 2
        span.set_attribute("mlflow.chat.tokenUsage", usage)
        return "an answer to " + question

    return llm("the question")


def _app_call(
    name: str,
    user: str,
    session: str,
    calls: list[tuple[tuple[str, str], int, int]],
    fail: bool = False,
) -> str:
    """One request to the app: a root span named `name` with one LLM span per call."""
    trace_ids: list[str] = []

    @mlflow.trace(name=name)
    def app(question: str) -> str:
        mlflow.update_current_trace(
            metadata={"mlflow.trace.user": user, "mlflow.trace.session": session},
            tags={"team": "support"},
        )
        span = mlflow.get_current_active_span()
        assert span is not None
        trace_ids.append(span.trace_id)
        answers = [_llm_call(model, i, o) for model, i, o in calls]
        if fail:
            raise RuntimeError("the app failed")
        return " ".join(answers)

    with contextlib.suppress(RuntimeError):
        app("hello")
    return trace_ids[0]


def build_genai_store(folder: Path) -> GenaiStore:
    path, built = template("genai", lambda here: log_genai_store(new_store(here)))
    store = copy.deepcopy(built)
    store.uri = copy_store(path, folder)
    return store


def log_genai_store(uri: str) -> GenaiStore:
    client = MlflowClient(uri)
    store = GenaiStore(uri)
    store.experiment_id = client.create_experiment("support bot")
    traces = store.traces
    with fluent_api(uri, store.experiment_id):
        traces["alice_1"] = _app_call("chat", "alice", "s1", [(CHEAP, 100, 20), (CHEAP, 50, 10)])
        traces["alice_2"] = _app_call("chat", "alice", "s1", [(BIG, 200, 40)])
        traces["bob_1"] = _app_call("chat", "bob", "s2", [(CHEAP, 10, 5)], fail=True)
        traces["bob_2"] = _app_call("summarize", "bob", "s3", [(CHEAP, 30, 6), (BIG, 70, 9)])
        with mlflow.start_run(run_name="logged in a run") as run:
            store.source_run_id = run.info.run_id
            traces["in_run"] = _app_call("summarize", "carol", "s4", [(BIG, 5, 5)])
        store.model_id = mlflow.set_active_model(name="bot-v2").model_id
        traces["served"] = _app_call("chat", "carol", "s4", [(CHEAP, 8, 2)])
        mlflow.clear_active_model()
        mlflow.flush_trace_async_logging()

        # the judge said alice_1 was wrong; a human overrides it: MLflow counts only the human
        judged = mlflow.log_feedback(
            trace_id=traces["alice_1"], name="correct", value=False, source=JUDGE, rationale="x"
        )
        store.overridden_id = judged.assessment_id
        mlflow.override_feedback(
            trace_id=traces["alice_1"],
            assessment_id=judged.assessment_id,
            value=True,
            rationale="the judge missed the context",
            source=HUMAN,
        )
        mlflow.log_feedback(trace_id=traces["alice_2"], name="correct", value=True, source=JUDGE)
        mlflow.log_feedback(trace_id=traces["bob_2"], name="correct", value=False, source=JUDGE)
        mlflow.log_feedback(trace_id=traces["bob_2"], name="relevance", value=0.5, source=JUDGE)
        mlflow.log_feedback(trace_id=traces["alice_1"], name="relevance", value=0.9, source=JUDGE)
        mlflow.log_expectation(
            trace_id=traces["alice_1"], name="expected_answer", value="42", source=HUMAN
        )
        mlflow.log_expectation(
            trace_id=traces["bob_2"], name="expected_answer", value="7", source=HUMAN
        )

    # an evaluation run that links the traces it judged (what mlflow.genai.evaluate does)
    store.eval_run_id = client.create_run(store.experiment_id, run_name="evaluation").info.run_id
    client.link_traces_to_run([traces["alice_1"], traces["alice_2"]], store.eval_run_id)
    client.link_traces_to_run([traces["in_run"]], store.eval_run_id)
    client.set_terminated(store.eval_run_id)
    return store
