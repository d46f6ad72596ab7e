"""MLflow 3's entities beyond the run row, read through MlflowClient's public API.

Like etl.extract.reader, this yields plain columnar records (table -> column -> values,
times as epoch ms) and knows nothing of DuckDB:

- dataset inputs and model outputs ride inside every search_runs page:
  `run_input_output_records(runs)` turns a page into datasets, run_inputs, run_outputs;
- logged models (with params, tags, metrics), the model registry (registered models,
  tags, versions, version tags, aliases), the prompt registry (prompts, tags, versions,
  aliases), traces (with assessments) and evaluation datasets (with tags and the
  experiments using them) are listings of their own, each paged to the end by
  `entity_records`;
- a run's logged-model inputs (`log_metric(..., model_id=...)`, `mlflow.genai.evaluate`)
  are in get_run's answer only, not in search_runs': `model_input_records` reads a SQL
  store's for a whole page in one SELECT, and asks any other store's get_run for each run
  of a page, only when the store holds logged models at all.

What MLflow's stores return, measured on mlflow 3.17: `search_model_versions` on SQL and
HTTP stores leaves `aliases` empty and `model_id` None, so aliases come from the
registered models and the model id from the version's `models:/m-...` source.
SQLite stores, file stores and `mlflow server` answer every listing (measured); a store
that lacks one (an older server, a deployment without a registry) has that listing skipped
with one log line, and its tables stay empty. Over HTTP an unset text field arrives as ""
and is stored as NULL, as the other stores return it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from etl.schema import empty_records

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import EvaluationDataset, LoggedModel, Run, Trace
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

log = logging.getLogger("runreport")

Records = dict[str, dict[str, list[Any]]]
T = TypeVar("T")

# The stores' limits: registered models 1,000 a page, model versions 200,000, traces
# 50,000 on SQL stores and 500 over HTTP.
REGISTERED_MODEL_PAGE_SIZE = 1_000
MODEL_VERSION_PAGE_SIZE = 10_000
LOGGED_MODEL_PAGE_SIZE = 1_000
TRACE_PAGE_SIZE = 5_000
RUN_PAGE_SIZE = 10_000
EVALUATION_DATASET_PAGE_SIZE = 1_000
HTTP_TRACE_PAGE_SIZE = 500
# search_logged_models and search_traces take experiment ids: this many per request.
EXPERIMENT_BATCH_SIZE = 100
CONTEXT_TAG = "mlflow.data.context"
MODEL_URI_PREFIX = "models:/m-"

# Tables filled from the listings: an extract replaces each one whole.
LOGGED_MODEL_TABLES = (
    "logged_models",
    "logged_model_params",
    "logged_model_tags",
    "logged_model_metrics",
)
REGISTRY_TABLES = (
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "model_aliases",
)
PROMPT_TABLES = ("prompts", "prompt_tags", "prompt_versions", "prompt_aliases")
TRACE_TABLES = ("traces", "trace_assessments", "trace_tags", "trace_runs", "trace_model_usage")
ISSUE_TABLES = ("issues",)
EVALUATION_DATASET_TABLES = (
    "evaluation_datasets",
    "evaluation_dataset_tags",
    "evaluation_dataset_experiments",
)
LISTED_TABLES = (
    LOGGED_MODEL_TABLES
    + REGISTRY_TABLES
    + PROMPT_TABLES
    + TRACE_TABLES
    + ISSUE_TABLES
    + EVALUATION_DATASET_TABLES
)


@dataclass(frozen=True)
class PageSizes:
    """Page sizes of the listings; small ones exercise paging in tests."""

    registered_models: int = REGISTERED_MODEL_PAGE_SIZE
    model_versions: int = MODEL_VERSION_PAGE_SIZE
    logged_models: int = LOGGED_MODEL_PAGE_SIZE
    traces: int | None = None  # by store: HTTP_TRACE_PAGE_SIZE over HTTP, else TRACE_PAGE_SIZE
    evaluation_datasets: int = EVALUATION_DATASET_PAGE_SIZE

    @classmethod
    def all(cls, size: int) -> PageSizes:
        return cls(size, size, size, size, size)


def _add(table: dict[str, list[Any]], **values: Any) -> None:
    for column, value in values.items():
        table[column].append(value)


def _text(value: Any) -> str | None:
    """An enum's value (LoggedModelStatus, TraceState) or any value as text."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _or_none(value: str | None) -> str | None:
    """Over HTTP an unset text field arrives as "" (protobuf's default), from SQL and file
    stores as None: NULL either way, so a store reads the same through both."""
    return value or None


def _paged(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    """Every item of a paged MLflow listing: `fetch(page_token)` until the token is empty."""
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def _batched(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- datasets, run inputs and run outputs: from the runs of a search_runs page -----------


def run_input_output_records(runs: Iterable[Run]) -> Records:
    """datasets (one row per distinct name and digest in the page), run_inputs, run_outputs."""
    records = empty_records()
    datasets, inputs, outputs = (
        records["datasets"],
        records["run_inputs"],
        records["run_outputs"],
    )
    seen: set[tuple[str, str]] = set()
    for run in runs:
        run_id = run.info.run_id
        for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
            dataset = dataset_input.dataset
            tags = {tag.key: tag.value for tag in dataset_input.tags}
            _add(
                inputs,
                run_id=run_id,
                dataset_name=dataset.name,
                dataset_digest=dataset.digest,
                context=tags.get(CONTEXT_TAG),
            )
            if (dataset.name, dataset.digest) not in seen:
                seen.add((dataset.name, dataset.digest))
                _add(
                    datasets,
                    name=dataset.name,
                    digest=dataset.digest,
                    source_type=dataset.source_type,
                    source=dataset.source,
                    schema=dataset.schema,
                    profile=dataset.profile,
                )
        for output in run.outputs.model_outputs if run.outputs else []:
            _add(outputs, run_id=run_id, model_id=output.model_id, step=output.step)
    return records


# --- logged models ----------------------------------------------------------------------


def list_logged_models(
    client: MlflowClient, experiment_ids: list[str], page_size: int = LOGGED_MODEL_PAGE_SIZE
) -> Iterator[LoggedModel]:
    for batch in _batched(experiment_ids, EXPERIMENT_BATCH_SIZE):
        yield from _paged(
            lambda token, batch=batch: client.search_logged_models(  # type: ignore[misc]
                experiment_ids=batch, max_results=page_size, page_token=token
            )
        )


def logged_model_records(models: Iterable[LoggedModel]) -> Records:
    records = empty_records()
    rows, params, tags, metrics = (
        records["logged_models"],
        records["logged_model_params"],
        records["logged_model_tags"],
        records["logged_model_metrics"],
    )
    for m in models:
        _add(
            rows,
            model_id=m.model_id,
            experiment_id=m.experiment_id,
            name=m.name,
            source_run_id=_or_none(m.source_run_id),
            status=_text(m.status),
            model_type=_or_none(m.model_type),
            creation_time=m.creation_timestamp,
            last_updated_time=m.last_updated_timestamp,
            artifact_location=m.artifact_location,
        )
        for key, value in m.params.items():
            _add(params, model_id=m.model_id, key=key, value=value)
        for key, value in m.tags.items():
            _add(tags, model_id=m.model_id, key=key, value=value)
        for metric in m.metrics or []:
            _add(
                metrics,
                model_id=m.model_id,
                key=metric.key,
                value=metric.value,
                step=metric.step,
                timestamp=metric.timestamp,
                run_id=metric.run_id,
                dataset_name=metric.dataset_name,
                dataset_digest=metric.dataset_digest,
            )
    return records


# --- the model registry -----------------------------------------------------------------


def list_registered_models(
    client: MlflowClient, page_size: int = REGISTERED_MODEL_PAGE_SIZE
) -> Iterator[RegisteredModel]:
    return _paged(
        lambda token: client.search_registered_models(max_results=page_size, page_token=token)
    )


def list_model_versions(
    client: MlflowClient, page_size: int = MODEL_VERSION_PAGE_SIZE
) -> Iterator[ModelVersion]:
    return _paged(
        lambda token: client.search_model_versions(max_results=page_size, page_token=token)
    )


def model_id_of(version: ModelVersion) -> str | None:
    """The logged model a version was registered from: SQL and HTTP stores return no
    model_id, but its source is `models:/m-...` then."""
    if version.model_id:
        return version.model_id
    source = version.source or ""
    if source.startswith(MODEL_URI_PREFIX):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def registry_records(
    models: Iterable[RegisteredModel], versions: Iterable[ModelVersion]
) -> Records:
    records = empty_records()
    rows, tags, aliases = (
        records["registered_models"],
        records["registered_model_tags"],
        records["model_aliases"],
    )
    for rm in models:
        _add(
            rows,
            name=rm.name,
            description=_or_none(rm.description),
            creation_time=rm.creation_timestamp,
            last_updated_time=rm.last_updated_timestamp,
        )
        for key, value in rm.tags.items():
            _add(tags, name=rm.name, key=key, value=value)
        for alias, version in rm.aliases.items():
            _add(aliases, name=rm.name, alias=alias, version=str(version))
    version_rows, version_tags = records["model_versions"], records["model_version_tags"]
    for v in versions:
        _add(
            version_rows,
            name=v.name,
            version=str(v.version),
            source=v.source,
            run_id=_or_none(v.run_id),
            model_id=model_id_of(v),
            status=_text(v.status),
            current_stage=v.current_stage,
            description=_or_none(v.description),
            creation_time=v.creation_timestamp,
            last_updated_time=v.last_updated_timestamp,
            user_id=_or_none(v.user_id),
            run_link=_or_none(v.run_link),
        )
        for key, value in v.tags.items():
            _add(version_tags, name=v.name, version=str(v.version), key=key, value=value)
    return records


# --- the prompt registry ----------------------------------------------------------------

# Keys MLflow writes (mlflow.prompt.constants; named here so etl.extract.sql_listings reads
# the same without importing MLflow)
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
PROMPT_TEXT_TAG = "mlflow.prompt.text"
PROMPT_TYPE_TAG = "_mlflow_prompt_type"
TEXT_PROMPT = "text"
# what search_prompts and search_prompt_versions filter the registry's listings by (the
# client leaves prompts out of any listing whose filter does not name this tag)
PROMPT_FILTER = f"tags.`{IS_PROMPT_TAG}` = 'true'"


def list_prompt_models(
    client: MlflowClient, page_size: int = REGISTERED_MODEL_PAGE_SIZE
) -> Iterator[RegisteredModel]:
    """The prompts as the registered models search_prompts lists (these carry the aliases,
    which search_prompts' Prompt and search_prompt_versions' versions leave out)."""
    return _paged(
        lambda token: client.search_registered_models(
            filter_string=PROMPT_FILTER, max_results=page_size, page_token=token
        )
    )


def list_prompt_versions(
    client: MlflowClient, page_size: int = MODEL_VERSION_PAGE_SIZE
) -> Iterator[ModelVersion]:
    """Every prompt version in one listing: search_prompt_versions' filter without the name."""
    return _paged(
        lambda token: client.search_model_versions(
            filter_string=PROMPT_FILTER, max_results=page_size, page_token=token
        )
    )


def prompt_records(prompts: Iterable[RegisteredModel], versions: Iterable[ModelVersion]) -> Records:
    """prompts, their tags (without the prompt marker, as search_prompts gives them), every
    version with its template text (a chat template as the JSON MLflow stores) and the
    aliases."""
    records = empty_records()
    names: set[str] = set()
    for rm in prompts:
        names.add(rm.name)
        _add(
            records["prompts"],
            name=rm.name,
            description=_or_none(rm.description),
            creation_time=rm.creation_timestamp,
        )
        for key, value in rm.tags.items():
            if key != IS_PROMPT_TAG:
                _add(records["prompt_tags"], name=rm.name, key=key, value=value)
        for alias, version in rm.aliases.items():
            _add(records["prompt_aliases"], name=rm.name, alias=alias, version=str(version))
    for v in versions:
        if v.name not in names:
            continue  # a prompt-tagged version of a registered model that is no prompt
        _add(
            records["prompt_versions"],
            **prompt_version_values(v.name, str(v.version), v.tags),
            commit_message=_or_none(v.description),
            user_id=_or_none(v.user_id),
            creation_time=v.creation_timestamp,
            last_updated_time=v.last_updated_timestamp,
        )
    return records


def prompt_version_values(name: str, version: str, tags: dict[str, str]) -> dict[str, Any]:
    """A prompt version's name, version, template and type from its tags (a version
    without the type tag is a text prompt, as PromptVersion reads it)."""
    return {
        "name": name,
        "version": version,
        "template": tags.get(PROMPT_TEXT_TAG),
        "prompt_type": tags.get(PROMPT_TYPE_TAG, TEXT_PROMPT),
    }


# --- traces, assessments, tags, run links and model usage -------------------------------

# Keys MLflow writes (mlflow.tracing.constant; named here so etl.extract.sql_listings reads
# the same without importing MLflow)
SOURCE_RUN = "mlflow.sourceRun"
TOKEN_USAGE = "mlflow.trace.tokenUsage"
TRACE_COST = "mlflow.trace.cost"
TRACE_USER = "mlflow.trace.user"
TRACE_SESSION = "mlflow.trace.session"
TRACE_MODEL_ID = "mlflow.modelId"
TRACE_NAME_TAG = "mlflow.traceName"
SPAN_MODEL = "mlflow.llm.model"
SPAN_PROVIDER = "mlflow.llm.provider"
SPAN_USAGE = "mlflow.chat.tokenUsage"
SPAN_COST = "mlflow.llm.cost"
TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
COST_KEYS = ("input_cost", "output_cost", "total_cost")


def trace_page_size(tracking_uri: str) -> int:
    return HTTP_TRACE_PAGE_SIZE if tracking_uri.lower().startswith("http") else TRACE_PAGE_SIZE


def list_traces(client: MlflowClient, experiment_ids: list[str], page_size: int) -> Iterator[Trace]:
    """Traces with their spans: the spans' model, provider, token usage and cost become
    trace_model_usage, and the spans are dropped (their contents never reach the warehouse)."""
    for batch in _batched(experiment_ids, EXPERIMENT_BATCH_SIZE):
        yield from _paged(
            lambda token, batch=batch: client.search_traces(  # type: ignore[misc]
                locations=batch,
                max_results=page_size,
                page_token=token,
                include_spans=True,
            )
        )


def json_object(text: str | None) -> dict[str, Any]:
    """A JSON object held as text (token usage, cost); {} for anything else."""
    try:
        found = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def assessment_value(assessment: Any) -> str | None:
    """Feedback and expectation values as text: a string as it is, anything else (true,
    0.8, a dict) as JSON."""
    value = getattr(assessment, "value", None)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def assessment_type(assessment: Any) -> str:
    """'feedback', 'expectation' or 'issue', as the store's assessment_type column holds it."""
    if assessment.feedback is not None:
        return "feedback"
    if assessment.expectation is not None:
        return "expectation"
    return "issue"


def model_usage_rows(
    trace_id: str, spans: Iterable[dict[str, Any]]
) -> list[tuple[str, str, str | None, int, int | None, int | None, float | None]]:
    """trace_model_usage rows from the attributes of a trace's spans (decoded): one per
    model and provider the spans called. Costs are summed with fsum, so the order the spans
    arrive in does not change the last digit."""
    grouped: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for attributes in spans:
        model = attributes.get(SPAN_MODEL)
        if not model or not isinstance(model, str):
            continue
        provider = attributes.get(SPAN_PROVIDER)
        grouped.setdefault((model, provider or None), []).append(attributes)
    rows = []
    for (model, provider), calls in sorted(grouped.items(), key=lambda kv: repr(kv[0])):
        usages = [u for u in (_as_dict(c.get(SPAN_USAGE)) for c in calls) if u]
        costs = [
            float(cost["total_cost"])
            for cost in (_as_dict(c.get(SPAN_COST)) for c in calls)
            if isinstance(cost.get("total_cost"), (int, float))
        ]
        rows.append(
            (
                trace_id,
                model,
                provider,
                len(calls),
                _token_sum(usages, "input_tokens"),
                _token_sum(usages, "output_tokens"),
                math.fsum(costs) if costs else None,
            )
        )
    return rows


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _token_sum(usages: list[dict[str, Any]], key: str) -> int | None:
    counts = [int(u[key]) for u in usages if isinstance(u.get(key), int)]
    return sum(counts) if counts else None


def trace_run(source_run: str | None, linked: Iterable[str]) -> str | None:
    """A trace's run: the run it was logged in (mlflow.sourceRun), else the first of the
    runs it was linked to (link_traces_to_run, mlflow.genai.evaluate)."""
    return source_run or min(linked, default=None)


def trace_records(traces: Iterable[Trace]) -> Records:
    records = empty_records()
    rows, assessments = records["traces"], records["trace_assessments"]
    for trace in traces:
        info = trace.info
        metadata = info.trace_metadata
        usage = json_object(metadata.get(TOKEN_USAGE))
        cost = json_object(metadata.get(TRACE_COST))
        _add(
            rows,
            trace_id=info.trace_id,
            experiment_id=info.experiment_id,
            run_id=_or_none(metadata.get(SOURCE_RUN)),
            request_time=info.request_time,
            execution_duration_ms=info.execution_duration,
            state=_text(info.state),
            trace_name=_or_none(info.tags.get(TRACE_NAME_TAG)),
            session_id=_or_none(metadata.get(TRACE_SESSION)),
            user=_or_none(metadata.get(TRACE_USER)),
            model_id=_or_none(metadata.get(TRACE_MODEL_ID)),
            **{key: usage.get(key) for key in TOKEN_KEYS},
            **{key: cost.get(key) for key in COST_KEYS},
        )
        for key, value in info.tags.items():
            _add(records["trace_tags"], trace_id=info.trace_id, key=key, value=value)
        for a in info.assessments:
            _add(
                assessments,
                trace_id=info.trace_id,
                name=a.name,
                source_type=a.source.source_type if a.source else None,
                value=assessment_value(a),
                create_time=a.create_time_ms,
                assessment_id=a.assessment_id,
                assessment_type=assessment_type(a),
                valid=a.valid,
                overrides=_or_none(a.overrides),
                rationale=_or_none(a.rationale),
                source_id=_or_none(a.source.source_id) if a.source else None,
                run_id=_or_none(a.run_id),
                span_id=_or_none(a.span_id),
            )
        spans = trace.data.spans if trace.data else []
        for row in model_usage_rows(info.trace_id, (span.attributes for span in spans)):
            _append_row(records["trace_model_usage"], row)
    return records


def _append_row(table: dict[str, list[Any]], row: tuple[Any, ...]) -> None:
    for values, value in zip(table.values(), row, strict=True):
        values.append(value)


def list_trace_links(
    client: MlflowClient, traced_experiments: list[str], experiment_ids: list[str]
) -> Iterator[tuple[str, str]]:
    """(trace_id, run_id) for every run of the experiments that hold traces and every trace
    search_traces(run_id=...) gives for it: the traces logged in the run and those linked
    to it. MLflow has no listing of the links themselves, hence one search per run."""
    from mlflow.entities import ViewType  # MLflow loads only on this (the API) path

    runs = _paged(
        lambda token: client.search_runs(
            traced_experiments,
            run_view_type=ViewType.ALL,
            max_results=RUN_PAGE_SIZE,
            page_token=token,
        )
    )
    for run in runs:
        run_id = run.info.run_id
        for batch in _batched(experiment_ids, EXPERIMENT_BATCH_SIZE):
            for trace in _paged(
                lambda token, batch=batch, run_id=run_id: client.search_traces(  # type: ignore[misc]
                    locations=batch,
                    run_id=run_id,
                    max_results=HTTP_TRACE_PAGE_SIZE,
                    page_token=token,
                    include_spans=False,
                )
            ):
                yield trace.info.trace_id, run_id


def add_trace_runs(records: Records, links: Iterable[tuple[str, str]]) -> Records:
    """trace_runs from the links (and each trace's own mlflow.sourceRun), and the traces'
    run_id where only a link names it."""
    traces = records["traces"]
    listed = set(traces["trace_id"])
    linked: dict[str, set[str]] = {}
    for trace_id, run_id in links:
        if trace_id in listed:
            linked.setdefault(trace_id, set()).add(run_id)
    for trace_id, run_id in zip(traces["trace_id"], traces["run_id"], strict=True):
        if run_id:
            linked.setdefault(trace_id, set()).add(run_id)
    for trace_id in sorted(linked):
        for run_id in sorted(linked[trace_id]):
            _add(records["trace_runs"], trace_id=trace_id, run_id=run_id)
    traces["run_id"] = [
        trace_run(run_id, linked.get(trace_id, ()))
        for trace_id, run_id in zip(traces["trace_id"], traces["run_id"], strict=True)
    ]
    return records


def traced_experiments(records: Records) -> list[str]:
    return sorted(set(records["traces"]["experiment_id"]))


def _traces(client: MlflowClient, experiment_ids: list[str], page_size: int) -> Records:
    records = trace_records(list_traces(client, experiment_ids, page_size))
    traced = traced_experiments(records)
    links = list_trace_links(client, traced, experiment_ids) if traced else iter(())
    return add_trace_runs(records, links)


# --- the issues MLflow detected ---------------------------------------------------------

ISSUE_PAGE_SIZE = 1_000


def list_issues(client: MlflowClient, page_size: int = ISSUE_PAGE_SIZE) -> Iterator[Any]:
    """Every issue of every experiment, with how many traces reference it. MlflowClient has
    no issue listing in 3.17: this is its tracking store's search_issues, the one the
    server answers /api/3.0/mlflow/issues/search with."""
    store = client._tracking_client.store
    return _paged(
        lambda token: store.search_issues(
            max_results=page_size, page_token=token, include_trace_count=True
        )
    )


def issue_records(issues: Iterable[Any], experiment_ids: Iterable[str]) -> Records:
    """The issues of these experiments; their categories as JSON text."""
    records = empty_records()
    experiments = set(experiment_ids)
    for issue in issues:
        if issue.experiment_id not in experiments:
            continue
        _add(
            records["issues"],
            issue_id=issue.issue_id,
            experiment_id=issue.experiment_id,
            name=issue.name,
            description=_or_none(issue.description),
            status=_text(issue.status),
            severity=_text(issue.severity),
            categories=json_list(issue.categories),
            source_run_id=_or_none(issue.source_run_id),
            created_by=_or_none(issue.created_by),
            created_time=issue.created_timestamp,
            last_updated_time=issue.last_updated_timestamp,
            traces=issue.trace_count,
        )
    return records


def json_list(values: list[str] | None) -> str | None:
    """A list as JSON text, NULL for none or an empty one (as MLflow reads an empty one)."""
    return json.dumps(values) if values else None


# --- evaluation datasets ----------------------------------------------------------------

# MLflow keeps a dataset's record count in its profile, {"num_records": n}, and no profile
# for an empty one (mlflow/store/tracking/sqlalchemy_store.py, _compute_dataset_profile)
NUM_RECORDS = "num_records"


def list_evaluation_datasets(
    client: MlflowClient, page_size: int = EVALUATION_DATASET_PAGE_SIZE
) -> Iterator[EvaluationDataset]:
    """Every evaluation dataset (search_datasets without experiments lists them all)."""
    return _paged(lambda token: client.search_datasets(max_results=page_size, page_token=token))


def dataset_record_count(profile: str | None) -> int:
    """The records a dataset holds, as its profile counts them (0 without one)."""
    count = json_object(profile).get(NUM_RECORDS, 0)
    return int(count) if isinstance(count, int | float) else 0


def evaluation_dataset_records(
    client: MlflowClient, datasets: Iterable[EvaluationDataset]
) -> Records:
    """The datasets, their tags and the experiments each is linked to. The experiments come
    from the client's own store (EvaluationDataset.experiment_ids would ask the process's
    default tracking store), one request per dataset."""
    store = client._tracking_client.store
    records = empty_records()
    for d in datasets:
        _add(
            records["evaluation_datasets"],
            dataset_id=d.dataset_id,
            name=d.name,
            digest=_or_none(d.digest),
            records=dataset_record_count(d.profile),
            created_time=d.created_time,
            last_update_time=d.last_update_time,
            created_by=_or_none(d.created_by),
            last_updated_by=_or_none(d.last_updated_by),
        )
        for key, value in d.tags.items():
            _add(records["evaluation_dataset_tags"], dataset_id=d.dataset_id, key=key, value=value)
        for experiment_id in store.get_dataset_experiment_ids(d.dataset_id):
            _add(
                records["evaluation_dataset_experiments"],
                dataset_id=d.dataset_id,
                experiment_id=str(experiment_id),
            )
    return records


# --- logged-model inputs of runs ---------------------------------------------------------

# tracking URI -> whether the store holds a logged model (asked once per process)
_HOLDS_LOGGED_MODELS: dict[str, bool] = {}
# run ids per SELECT when a SQL store's inputs are read for a page
MODEL_INPUT_ID_BATCH = 500


def store_holds_logged_models(client: MlflowClient) -> bool:
    """Whether any experiment (deleted ones too) holds a logged model: a store without
    one has no run with a logged-model input, and get_run is not asked per run. (A store
    with one is asked for every run: a run evaluates a model of any experiment, and no
    listing says which; over HTTP that is about 15 ms a run, where --via sql reads them
    in one query.)"""
    uri = client.tracking_uri
    if uri not in _HOLDS_LOGGED_MODELS:
        # MLflow is imported where it is used (seconds a --via sql run skips)
        from mlflow.entities import ViewType

        experiments = _paged(
            lambda token: client.search_experiments(
                view_type=ViewType.ALL, max_results=REGISTERED_MODEL_PAGE_SIZE, page_token=token
            )
        )
        ids = [e.experiment_id for e in experiments]
        try:
            _HOLDS_LOGGED_MODELS[uri] = any(
                len(client.search_logged_models(experiment_ids=batch, max_results=1)) > 0
                for batch in _batched(ids, EXPERIMENT_BATCH_SIZE)
            )
        except Exception as exc:
            if not _unsupported(exc):
                raise
            _HOLDS_LOGGED_MODELS[uri] = False
    return _HOLDS_LOGGED_MODELS[uri]


def model_input_records(client: MlflowClient, runs: Iterable[Run]) -> Records:
    """run_model_inputs of a page of runs: the logged models each run took as input.
    search_runs leaves RunInputs.model_inputs out: a SQL store's are read as
    SqlAlchemyStore._get_model_inputs reads them, for the whole page in one SELECT; any
    other store's through get_run, one call per run."""
    records = empty_records(["run_model_inputs"])
    run_ids = [run.info.run_id for run in runs]
    if not run_ids:
        return records
    store: Any = client._tracking_client.store
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if isinstance(store, SqlAlchemyStore):
        found = _sql_model_inputs(store, run_ids)
    elif store_holds_logged_models(client):
        found = _model_inputs_by_get_run(client, run_ids)
    else:
        found = []
    for run_id, model_id in found:
        _add(records["run_model_inputs"], run_id=run_id, model_id=model_id)
    return records


def _sql_model_inputs(store: Any, run_ids: list[str]) -> list[tuple[str, str]]:
    # MLflow's table model and SQLAlchemy: only on this path, through MLflow's own store
    from mlflow.store.tracking.dbmodels.models import SqlInput
    from sqlalchemy import select

    found: list[tuple[str, str]] = []
    with store.ManagedSessionMaker() as session:
        for batch in _batched(run_ids, MODEL_INPUT_ID_BATCH):
            query: Any = select(SqlInput.source_id, SqlInput.destination_id).where(
                SqlInput.source_type == "RUN_INPUT",
                SqlInput.destination_type == "MODEL_INPUT",
                SqlInput.source_id.in_(batch),
            )
            found += [(run_id, model_id) for run_id, model_id in session.execute(query)]
    return found


def _model_inputs_by_get_run(client: MlflowClient, run_ids: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                raise
            continue  # deleted for good since its page was listed: nothing to keep
        found += [(run_id, m.model_id) for m in (run.inputs.model_inputs if run.inputs else [])]
    return found


# --- all listings -----------------------------------------------------------------------


def _unsupported(exc: Exception) -> bool:
    """A store that has no such listing (rather than one that failed)."""
    if isinstance(exc, NotImplementedError):
        return True
    code = str(getattr(exc, "error_code", ""))
    return code in {"ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "FEATURE_DISABLED"}


def _or_skipped(what: str, read: Callable[[], Records]) -> Records:
    try:
        return read()
    except Exception as exc:
        if not _unsupported(exc):
            raise
        reason = " ".join(str(getattr(exc, "message", None) or exc).split())[:200]
        log.info("%s: not supported by this store, skipped (%s)", what, reason or "no reason")
        return empty_records()


def merge(into: Records, other: Records) -> Records:
    for table, columns in other.items():
        for column, values in columns.items():
            into[table][column].extend(values)
    return into


def no_listings() -> Records:
    """The LISTED_TABLES of a store that holds no logged model, registered model or trace."""
    records = empty_records()
    return {table: records[table] for table in LISTED_TABLES}


def entity_records(
    client: MlflowClient,
    tracking_uri: str,
    experiment_ids: list[str],
    page_sizes: PageSizes | None = None,
) -> Records:
    """Every logged model, registered model, model version and trace (with their params,
    tags, metrics, aliases and assessments) the store lists: records of the LISTED_TABLES
    only, each one whole."""
    sizes = page_sizes or PageSizes()
    traces_page = sizes.traces or trace_page_size(tracking_uri)
    records = empty_records()
    merge(
        records,
        _or_skipped(
            "logged models",
            lambda: logged_model_records(
                list_logged_models(client, experiment_ids, sizes.logged_models)
            ),
        ),
    )
    merge(
        records,
        _or_skipped(
            "the model registry",
            lambda: registry_records(
                list_registered_models(client, sizes.registered_models),
                list_model_versions(client, sizes.model_versions),
            ),
        ),
    )
    merge(
        records,
        _or_skipped(
            "the prompt registry",
            lambda: prompt_records(
                list_prompt_models(client, sizes.registered_models),
                list_prompt_versions(client, sizes.model_versions),
            ),
        ),
    )
    merge(
        records,
        _or_skipped("traces", lambda: _traces(client, experiment_ids, traces_page)),
    )
    merge(
        records,
        _or_skipped("detected issues", lambda: issue_records(list_issues(client), experiment_ids)),
    )
    merge(
        records,
        _or_skipped(
            "evaluation datasets",
            lambda: evaluation_dataset_records(
                client, list_evaluation_datasets(client, sizes.evaluation_datasets)
            ),
        ),
    )
    return {table: records[table] for table in LISTED_TABLES}
