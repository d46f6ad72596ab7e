"""MLflow 3's entities beyond the run row, read through MlflowClient's public API.

Like etl.extract.reader, this yields plain columnar records (table -> column -> values,
times as epoch ms) and knows nothing of DuckDB:

- dataset inputs and model outputs ride inside every search_runs page:
  `run_input_output_records(runs)` turns a page into datasets, run_inputs, run_outputs;
- logged models (with params, tags, metrics), the model registry (registered models,
  tags, versions, version tags, aliases) and traces (with assessments) are listings of
  their own, each paged to the end by `entity_records`.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from etl.schema import empty_records

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModel, Run, Trace
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
TRACE_TABLES = ("traces", "trace_assessments")
LISTED_TABLES = LOGGED_MODEL_TABLES + REGISTRY_TABLES + TRACE_TABLES


@dataclass(frozen=True)
class PageSizes:
    """Page sizes of the listings; small ones exercise paging in tests."""

    registered_models: int = REGISTERED_MODEL_PAGE_SIZE
    model_versions: int = MODEL_VERSION_PAGE_SIZE
    logged_models: int = LOGGED_MODEL_PAGE_SIZE
    traces: int | None = None  # by store: HTTP_TRACE_PAGE_SIZE over HTTP, else TRACE_PAGE_SIZE

    @classmethod
    def all(cls, size: int) -> PageSizes:
        return cls(size, size, size, size)


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
        )
        for key, value in v.tags.items():
            _add(version_tags, name=v.name, version=str(v.version), key=key, value=value)
    return records


# --- traces and assessments -------------------------------------------------------------


def trace_page_size(tracking_uri: str) -> int:
    return HTTP_TRACE_PAGE_SIZE if tracking_uri.lower().startswith("http") else TRACE_PAGE_SIZE


def list_traces(client: MlflowClient, experiment_ids: list[str], page_size: int) -> Iterator[Trace]:
    """Trace infos without spans (the spans are the bulk of a trace)."""
    for batch in _batched(experiment_ids, EXPERIMENT_BATCH_SIZE):
        yield from _paged(
            lambda token, batch=batch: client.search_traces(  # type: ignore[misc]
                locations=batch,
                max_results=page_size,
                page_token=token,
                include_spans=False,
            )
        )


def _token_usage(metadata: dict[str, str]) -> dict[str, Any]:
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.tracing.constant import TraceMetadataKey

    try:
        usage = json.loads(metadata.get(TraceMetadataKey.TOKEN_USAGE) or "{}")
    except ValueError:
        return {}
    return usage if isinstance(usage, dict) else {}


def assessment_value(assessment: Any) -> str | None:
    """Feedback and expectation values as text: a string as it is, anything else (true,
    0.8, a dict) as JSON."""
    value = getattr(assessment, "value", None)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def trace_records(traces: Iterable[Trace]) -> Records:
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.tracing.constant import TraceMetadataKey

    records = empty_records()
    rows, assessments = records["traces"], records["trace_assessments"]
    for trace in traces:
        info = trace.info
        usage = _token_usage(info.trace_metadata)
        _add(
            rows,
            trace_id=info.trace_id,
            experiment_id=info.experiment_id,
            run_id=info.trace_metadata.get(TraceMetadataKey.SOURCE_RUN),
            request_time=info.request_time,
            execution_duration_ms=info.execution_duration,
            state=_text(info.state),
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            total_tokens=usage.get("total_tokens"),
        )
        for a in info.assessments:
            _add(
                assessments,
                trace_id=info.trace_id,
                name=a.name,
                source_type=a.source.source_type if a.source else None,
                value=assessment_value(a),
                create_time=a.create_time_ms,
            )
    return records


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
            "traces",
            lambda: trace_records(list_traces(client, experiment_ids, traces_page)),
        ),
    )
    return {table: records[table] for table in LISTED_TABLES}
