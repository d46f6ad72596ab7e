"""A GenAI store built through MLflow's own API (mlflow 3.17), no network: traced local
functions stand for the LLM (their spans carry a model, a provider and token counts, and
MLflow prices them itself), sessions and users, tags, an LLM judge's feedback a human
overrides, an expectation, a numeric score, an error, a trace logged in a run and traces
linked to an evaluation run, a logged model serving traces, and a prompt with two versions
and two aliases, and a registered model (with a run link) beside them.

`build_genai_store(folder)` copies the session's template (built once by
`log_genai_store`)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, IssueSeverity, IssueStatus

from tests.conftest import new_store
from tests.templates import copy_store, template
from tests.test_entities import fluent_api

JUDGE = AssessmentSource(source_type="LLM_JUDGE", source_id="judge-v1")
HUMAN = AssessmentSource(source_type="HUMAN", source_id="ann@example.com")
# models MLflow prices from its bundled table (checked: both give a cost offline)
CHEAP = ("gpt-4o-mini", "openai")
BIG = ("gpt-4o", "openai")
PROMPT = "support-answer"
JUDGE_PROMPT = "judge-instructions"
CHAT_TEMPLATE = [
    {"role": "system", "content": "You answer questions about {{topic}}."},
    {"role": "user", "content": "{{question}}"},
]
MODEL = "support-bot"  # a registered model beside the prompts
RUN_LINK = "https://ci.example.com/builds/7"


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
    log_prompts(store)
    return store


def log_prompts(store: GenaiStore) -> None:
    """Two prompts (one with a text and a chat version and two aliases) and a registered
    model with an alias of its own, registered from the served logged model."""
    with fluent_api(store.uri, store.experiment_id):
        mlflow.genai.register_prompt(
            PROMPT,
            template="Answer {{question}} politely.",
            commit_message="first wording",
            tags={"team": "support"},
        )
        mlflow.genai.register_prompt(PROMPT, template=CHAT_TEMPLATE, commit_message="as a chat")
        mlflow.genai.set_prompt_alias(PROMPT, "production", 1)
        mlflow.genai.set_prompt_alias(PROMPT, "staging", 2)
        mlflow.genai.register_prompt(JUDGE_PROMPT, template="Is {{answer}} correct?")
        client = MlflowClient(store.uri)
        client.create_registered_model(MODEL)
        client.create_model_version(
            MODEL,
            source=f"models:/{store.model_id}",
            run_id=store.source_run_id,
            run_link=RUN_LINK,
            model_id=store.model_id,
        )
        client.set_registered_model_alias(MODEL, "production", "1")


def log_issues(store: GenaiStore) -> dict[str, str]:
    """Issues as MLflow's issue detection records them (the tracking store's create_issue,
    then log_issue on the traces it found them in): a high-severity one in three traces
    found by the evaluation run, a resolved low one in one trace, and a pending one in
    none. Not in the template: they add issue references to the traces' assessments.
    Returns name -> issue id."""
    tracking = MlflowClient(store.uri)._tracking_client.store
    found = {
        "wrong refund policy": (IssueSeverity.HIGH, IssueStatus.PENDING, ["correctness"]),
        "slow answers": (IssueSeverity.LOW, IssueStatus.RESOLVED, None),
        "tone": (None, IssueStatus.PENDING, ["style", "brand"]),
    }
    ids = {}
    for name, (severity, status, categories) in found.items():
        ids[name] = tracking.create_issue(
            store.experiment_id,
            name,
            f"the app shows {name}",
            status=status,
            severity=severity,
            source_run_id=store.eval_run_id if severity is IssueSeverity.HIGH else None,
            categories=categories,
            created_by="issue-detector",
        ).issue_id
    t = store.traces
    with fluent_api(store.uri, store.experiment_id):
        for label in ("alice_1", "alice_2", "bob_2"):
            mlflow.log_issue(trace_id=t[label], issue_id=ids["wrong refund policy"])
        mlflow.log_issue(trace_id=t["bob_1"], issue_id=ids["slow answers"])
    return ids


# --- evaluation datasets and runs that evaluated a logged model ---------------------------

GOLDEN = "qa-golden"  # three records, one deleted, in two experiments
EMPTY = "qa-empty"  # no record, no experiment, made by someone else


@dataclass
class EvaluationStore:
    genai: GenaiStore
    offline_experiment_id: str = ""
    # name -> dataset id
    datasets: dict[str, str] = field(default_factory=dict)
    # label -> run id: runs that took the served logged model as input
    evaluating_runs: dict[str, str] = field(default_factory=dict)


def build_evaluation_store(folder: Path) -> EvaluationStore:
    """The GenAI store with evaluation datasets and runs that evaluated its logged model;
    a copy of the session's template."""
    path, built = template("genai-evaluation", _log_evaluation_template)
    store = copy.deepcopy(built)
    store.genai.uri = copy_store(path, folder)
    return store


def _log_evaluation_template(folder: Path) -> EvaluationStore:
    genai = build_genai_store(folder)
    return log_evaluation(EvaluationStore(genai))


def log_evaluation(store: EvaluationStore) -> EvaluationStore:
    """Datasets through mlflow.genai.datasets (records merged, one deleted, tags, one
    dataset linked to two experiments, one to none and created by another user), and
    three runs with a logged-model input: one from log_metric(..., model_id=...), one from
    log_inputs(models=...) alone, and a deleted one."""
    from mlflow.entities import LoggedModelInput
    from mlflow.genai.datasets import create_dataset

    genai = store.genai
    client = MlflowClient(genai.uri)
    store.offline_experiment_id = client.create_experiment("offline evaluation")
    with fluent_api(genai.uri, genai.experiment_id):
        golden = create_dataset(
            name=GOLDEN,
            experiment_id=[genai.experiment_id, store.offline_experiment_id],
            tags={"team": "support", "stage": "gold", "mlflow.user": "ann@example.com"},
        )
        golden.merge_records(
            [
                {"inputs": {"question": "refund?"}, "expectations": {"answer": "30 days"}},
                {"inputs": {"question": "hours?"}, "expectations": {"answer": "9-5"}},
                {"inputs": {"question": "shipping?"}},
            ]
        )
        dropped = client._tracking_client.store._load_dataset_records(
            golden.dataset_id, max_results=None
        )[0][-1]
        client._tracking_client.store.delete_dataset_records(
            golden.dataset_id, [dropped.dataset_record_id]
        )

        with mlflow.start_run(run_name="scored the bot") as run:
            mlflow.log_metric("accuracy", 0.8, model_id=genai.model_id)
            store.evaluating_runs["by_metric"] = run.info.run_id
    # MlflowClient's create_dataset links no experiment (the fluent one, the active one)
    empty = client.create_dataset(name=EMPTY, tags={"mlflow.user": "bob@example.com"})
    store.datasets = {GOLDEN: golden.dataset_id, EMPTY: empty.dataset_id}
    for label in ("by_inputs", "deleted"):
        run_id = client.create_run(
            store.offline_experiment_id, run_name=f"evaluated ({label})"
        ).info.run_id
        client.log_inputs(run_id, models=[LoggedModelInput(model_id=genai.model_id)])
        client.set_terminated(run_id)
        store.evaluating_runs[label] = run_id
    client.delete_run(store.evaluating_runs["deleted"])
    return store
