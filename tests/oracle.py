"""MLflow as the oracle: the same facts read through MlflowClient and from the warehouse."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import duckdb
from mlflow import MlflowClient
from mlflow.entities import ViewType

from etl.schema import TABLES, WORKSPACE_COLUMN

Snapshot = dict[str, set[tuple]]


def mlflow_snapshot(uri: str) -> Snapshot:
    """Every experiment and run as MlflowClient returns them, one experiment at a time."""
    client = MlflowClient(uri)
    snap: Snapshot = {
        t: set() for t in ("experiments", "experiment_tags", "runs", "params", "tags", "metrics")
    }
    experiments = client.search_experiments(view_type=ViewType.ALL, max_results=50_000)
    for e in experiments:
        snap["experiments"].add(
            (
                e.experiment_id,
                e.name,
                e.artifact_location,
                e.lifecycle_stage,
                e.creation_time,
                e.last_update_time,
            )
        )
        snap["experiment_tags"] |= {(e.experiment_id, k, v) for k, v in e.tags.items()}
        token = None
        while True:
            page = client.search_runs(
                [e.experiment_id], run_view_type=ViewType.ALL, max_results=50_000, page_token=token
            )
            for run in page:
                i, d = run.info, run.data
                snap["runs"].add(
                    (
                        i.run_id,
                        i.experiment_id,
                        i.run_name,
                        i.status,
                        i.user_id,
                        i.start_time,
                        i.end_time,
                        i.lifecycle_stage,
                        i.artifact_uri,
                    )
                )
                snap["params"] |= {(i.run_id, k, v) for k, v in d.params.items()}
                snap["tags"] |= {(i.run_id, k, v) for k, v in d.tags.items()}
                snap["metrics"] |= {
                    (i.run_id, m.key, repr(m.value), m.step, m.timestamp) for m in d._metric_objs
                }
            token = page.token
            if not token:
                break
    return snap


def warehouse_snapshot(db: Path) -> Snapshot:
    con = duckdb.connect(str(db), read_only=True)
    queries = {
        "experiments": "select experiment_id, name, artifact_location, lifecycle_stage, "
        "epoch_ms(creation_time), epoch_ms(last_update_time) from experiments",
        "experiment_tags": "select experiment_id, key, value from experiment_tags",
        "runs": "select run_id, experiment_id, run_name, status, user_id, epoch_ms(start_time), "
        "epoch_ms(end_time), lifecycle_stage, artifact_uri from runs",
        "params": "select run_id, key, value from params",
        "tags": "select run_id, key, value from tags",
        "metrics": "select run_id, key, value, step, epoch_ms(timestamp) from metrics",
    }
    snap: Snapshot = {}
    try:
        for table, query in queries.items():
            rows = con.execute(query).fetchall()
            if table == "metrics":
                rows = [(r, k, repr(v), s, t) for r, k, v, s, t in rows]
            snap[table] = set(rows)
            assert len(snap[table]) == len(rows), f"duplicate rows in {table}"
    finally:
        con.close()
    return snap


def table_counts(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("experiments", "runs", "params", "metrics", "tags")
        }
    finally:
        con.close()


# --- the source contract's oracle: rows as MLflow lists them, rows as the warehouse holds them

Rows = dict[str, list[str]]  # table -> its rows, each a repr (NaN equals NaN), sorted
RUN_TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "tags",
    "metrics",
    "metric_history",
    "datasets",
    "run_inputs",
    "run_outputs",
)


def mlflow_rows(uri: str) -> Rows:
    """Every experiment and run, with their params, latest metrics, tags, every metric
    point, dataset inputs and model outputs, as MlflowClient lists them, in the warehouse's
    column order (times as epoch ms)."""
    client = MlflowClient(uri)
    found: dict[str, set[tuple] | list[tuple]] = {t: [] for t in RUN_TABLES}
    found["datasets"] = set()  # the warehouse keeps each dataset once
    snap = mlflow_snapshot(uri)
    for table in ("experiments", "experiment_tags", "runs", "params", "tags"):
        found[table] = list(snap[table])
    for e in client.search_experiments(view_type=ViewType.ALL, max_results=50_000):
        token = None
        while True:
            page = client.search_runs(
                [e.experiment_id], run_view_type=ViewType.ALL, max_results=50_000, page_token=token
            )
            for run in page:
                _add_run_rows(client, run, found)
            token = page.token
            if not token:
                break
    return {table: sorted(map(repr, rows)) for table, rows in found.items()}


def _add_run_rows(client: MlflowClient, run: Any, found: dict[str, Any]) -> None:
    run_id = run.info.run_id
    for m in run.data._metric_objs:
        found["metrics"].append((run_id, m.key, m.value, m.step, m.timestamp))
        for point in client.get_metric_history(run_id, m.key):
            found["metric_history"].append(
                (run_id, point.key, point.value, point.step, point.timestamp)
            )
    for given in run.inputs.dataset_inputs if run.inputs else []:
        d = given.dataset
        context = {tag.key: tag.value for tag in given.tags}.get("mlflow.data.context")
        found["run_inputs"].append((run_id, d.name, d.digest, context))
        found["datasets"].add((d.name, d.digest, d.source_type, d.source, d.schema, d.profile))
    for output in run.outputs.model_outputs if run.outputs else []:
        found["run_outputs"].append((run_id, output.model_id, output.step))


def warehouse_rows(db: Path, tables: tuple[str, ...] = RUN_TABLES) -> Rows:
    """The same tables as the warehouse holds them, times back to epoch ms; without the
    workspace column, which MLflow's listings leave out (tests/test_workspaces.py checks
    it)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = {}
        for table in tables:
            columns = ", ".join(
                f"epoch_ms({name})" if kind == "ms" else name
                for name, kind in TABLES[table]
                if name != WORKSPACE_COLUMN
            )
            found = con.execute(f"select {columns} from {table}").fetchall()
            rows[table] = sorted(map(repr, found))
        return rows
    finally:
        con.close()


# --- GenAI: traces with their assessments, tags, run links and model usage, as MLflow
# lists them (search_traces with spans; search_traces(run_id=...) for every run)

GENAI_TABLES = ("traces", "trace_assessments", "trace_tags", "trace_runs", "trace_model_usage")
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def genai_rows(uri: str) -> Rows:
    """The GenAI tables as MlflowClient lists them, in the warehouse's column order: every
    trace of every experiment (deleted ones too) with its spans, and the traces
    search_traces(run_id=...) gives for each run of the experiments that hold traces."""
    client = MlflowClient(uri)
    ids = [
        e.experiment_id
        for e in client.search_experiments(view_type=ViewType.ALL, max_results=50_000)
    ]
    found: dict[str, list[tuple[Any, ...]]] = {t: [] for t in GENAI_TABLES}
    traces = list(_all_pages(lambda t: client.search_traces(locations=ids, page_token=t)))
    links: dict[str, set[str]] = {}
    traced = sorted({trace.info.experiment_id for trace in traces})
    runs = client.search_runs(traced, run_view_type=ViewType.ALL) if traced else []
    for run in runs:
        run_id = run.info.run_id
        for linked in _all_pages(
            lambda t, r=run_id: client.search_traces(locations=ids, run_id=r, page_token=t)
        ):
            links.setdefault(linked.info.trace_id, set()).add(run_id)
    for trace in traces:
        _add_trace_rows(trace, links.get(trace.info.trace_id, set()), found)
    return {table: sorted(map(repr, rows)) for table, rows in found.items()}


def _all_pages(fetch: Any) -> Any:
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def _add_trace_rows(trace: Any, linked: set[str], found: dict[str, list[tuple[Any, ...]]]) -> None:
    info = trace.info
    meta = info.trace_metadata
    source_run = meta.get("mlflow.sourceRun")
    runs = linked | ({source_run} if source_run else set())
    usage, cost = info.token_usage or {}, info.cost or {}
    found["traces"].append(
        (
            info.trace_id,
            info.experiment_id,
            source_run or min(runs, default=None),
            info.request_time,
            info.execution_duration,
            info.state.value,
            *(usage.get(key) for key in _TOKENS[:3]),
            info.tags.get("mlflow.traceName"),
            meta.get("mlflow.trace.session"),
            meta.get("mlflow.trace.user"),
            meta.get("mlflow.modelId"),
            *(usage.get(key) for key in _TOKENS[3:]),
            cost.get("input_cost"),
            cost.get("output_cost"),
            cost.get("total_cost"),
        )
    )
    found["trace_tags"] += [(info.trace_id, k, v) for k, v in info.tags.items()]
    found["trace_runs"] += [(info.trace_id, run_id) for run_id in runs]
    for a in info.assessments:
        value = (
            a.value
            if a.value is None or isinstance(a.value, str)
            else json.dumps(a.value, sort_keys=True)
        )
        kind = "feedback" if a.feedback else "expectation" if a.expectation else "issue"
        found["trace_assessments"].append(
            (
                info.trace_id,
                a.name,
                a.source.source_type,
                value,
                a.create_time_ms,
                a.assessment_id,
                kind,
                a.valid,
                a.overrides,
                a.rationale,
                a.source.source_id,
                a.run_id,
                a.span_id,
            )
        )
    calls: dict[tuple[str, str | None], list[Any]] = {}
    for span in trace.data.spans:
        model = span.get_attribute("mlflow.llm.model")
        if model:
            calls.setdefault((model, span.get_attribute("mlflow.llm.provider")), []).append(span)
    for (model, provider), spans in calls.items():
        usages = [s.get_attribute("mlflow.chat.tokenUsage") or {} for s in spans]
        costs = [(s.get_attribute("mlflow.llm.cost") or {}).get("total_cost") for s in spans]
        known = [c for c in costs if c is not None]
        inputs = [u["input_tokens"] for u in usages if "input_tokens" in u]
        outputs = [u["output_tokens"] for u in usages if "output_tokens" in u]
        found["trace_model_usage"].append(
            (
                info.trace_id,
                model,
                provider,
                len(spans),
                sum(inputs) if inputs else None,
                sum(outputs) if outputs else None,
                math.fsum(known) if known else None,
            )
        )


# --- the prompt registry, as search_prompts, search_prompt_versions and get_prompt_version list it

PROMPT_TABLES = ("prompts", "prompt_tags", "prompt_versions", "prompt_aliases")


def prompt_rows(uri: str) -> Rows:
    """The prompt tables as MLflow's prompt API gives them: every prompt search_prompts
    lists, every version search_prompt_versions lists for it, and every alias with the
    version get_prompt_version(name, alias) resolves it to. MLflow's prompt API names
    no alias of a prompt (PromptVersion.aliases arrives empty): their names come from the
    registered-model listing search_prompts reads, their versions from get_prompt_version
    (load_prompt would link the prompt to the active experiment: a read that writes)."""
    client = MlflowClient(uri, registry_uri=uri)
    found: dict[str, list[tuple[Any, ...]]] = {t: [] for t in PROMPT_TABLES}
    prompt_filter = "tags.`mlflow.prompt.is_prompt` = 'true'"
    alias_names = {
        rm.name: sorted(rm.aliases)
        for rm in _all_pages(
            lambda t: client.search_registered_models(filter_string=prompt_filter, page_token=t)
        )
    }
    for prompt in _all_pages(lambda t: client.search_prompts(page_token=t)):
        name = prompt.name
        found["prompts"].append((name, prompt.description, prompt.creation_timestamp))
        found["prompt_tags"] += [(name, k, v) for k, v in prompt.tags.items()]
        for v in _all_pages(lambda t, n=name: client.search_prompt_versions(n, page_token=t)):
            template = v.template if isinstance(v.template, str) else json.dumps(v.template)
            found["prompt_versions"].append(
                (
                    name,
                    str(v.version),
                    template,
                    "text" if v.is_text_prompt else "chat",
                    v.commit_message,
                    v.user_id,
                    v.creation_timestamp,
                    v.last_updated_timestamp,
                )
            )
        for alias in alias_names[name]:
            resolved = client.get_prompt_version(name, alias)
            assert resolved is not None, f"{name}@{alias} resolves to no version"
            found["prompt_aliases"].append((name, alias, str(resolved.version)))
    return {table: sorted(map(repr, rows)) for table, rows in found.items()}


# --- the issues MLflow detected, as the tracking store's search_issues lists them


def issue_rows(uri: str) -> list[str]:
    """Every issue of every experiment with its trace count (search_issues, one experiment
    at a time: what /api/3.0/mlflow/issues/search answers), in the warehouse's columns."""
    client = MlflowClient(uri)
    store = client._tracking_client.store
    rows = []
    for e in client.search_experiments(view_type=ViewType.ALL, max_results=50_000):
        for issue in _all_pages(
            lambda t, e=e: store.search_issues(
                experiment_id=e.experiment_id, page_token=t, include_trace_count=True
            )
        ):
            rows.append(
                (
                    issue.issue_id,
                    issue.experiment_id,
                    issue.name,
                    issue.description,
                    issue.status.value,
                    issue.severity.value if issue.severity else None,
                    json.dumps(issue.categories) if issue.categories else None,
                    issue.source_run_id,
                    issue.created_by,
                    issue.created_timestamp,
                    issue.last_updated_timestamp,
                    issue.trace_count,
                )
            )
    return sorted(map(repr, rows))


# --- evaluation datasets, as search_datasets, get_dataset_experiment_ids and the records
# MLflow loads for each dataset list them

EVALUATION_DATASET_TABLES = (
    "evaluation_datasets",
    "evaluation_dataset_tags",
    "evaluation_dataset_experiments",
)


def evaluation_dataset_rows(uri: str) -> Rows:
    """Every dataset search_datasets lists, its record count as the records MLflow loads
    for it (EvaluationDataset.records' own call, on this store), its tags and experiments."""
    client = MlflowClient(uri)
    store = client._tracking_client.store
    found: dict[str, list[tuple[Any, ...]]] = {t: [] for t in EVALUATION_DATASET_TABLES}
    for d in _all_pages(lambda t: client.search_datasets(page_token=t)):
        records, _ = store._load_dataset_records(d.dataset_id, max_results=None)
        found["evaluation_datasets"].append(
            (
                d.dataset_id,
                d.name,
                d.digest,
                len(records),
                d.created_time,
                d.last_update_time,
                d.created_by,
                d.last_updated_by,
            )
        )
        found["evaluation_dataset_tags"] += [(d.dataset_id, k, v) for k, v in d.tags.items()]
        found["evaluation_dataset_experiments"] += [
            (d.dataset_id, e) for e in store.get_dataset_experiment_ids(d.dataset_id)
        ]
    return {table: sorted(map(repr, rows)) for table, rows in found.items()}


# --- logged-model inputs, as get_run gives each run of search_runs' listing


def run_model_input_rows(uri: str) -> list[str]:
    """(run_id, model_id) for every run of every experiment, deleted ones too, from
    get_run's RunInputs.model_inputs (search_runs leaves them out)."""
    client = MlflowClient(uri)
    rows = []
    for e in client.search_experiments(view_type=ViewType.ALL, max_results=50_000):
        for run in _all_pages(
            lambda t, e=e: client.search_runs(
                [e.experiment_id], run_view_type=ViewType.ALL, page_token=t
            )
        ):
            full = client.get_run(run.info.run_id)
            rows += [(run.info.run_id, m.model_id) for m in full.inputs.model_inputs]
    return sorted(map(repr, rows))


def mismatches(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Per table whose rows differ: the rows MLflow lists that the warehouse lacks, and
    the rows the warehouse holds that MLflow does not list. Empty: equal."""
    return {
        table: {
            "missing": sorted(set(rows) - set(got[table])),
            "extra": sorted(set(got[table]) - set(rows)),
        }
        for table, rows in expected.items()
        if got[table] != rows
    }
