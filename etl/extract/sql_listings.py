"""Logged models, the model registry and traces read from a SQL store's own tables.

`listing_records(snapshot, experiment_ids)` gives the records `entities.entity_records`
gives through MlflowClient, without MLflow (whose client would migrate an older store in
place). Each value as MLflow's SqlAlchemyStore returns it (mlflow 3.17,
mlflow/store/tracking/sqlalchemy_store.py and mlflow/store/model_registry/):

- logged models: those of the experiments that are not deleted (`lifecycle_stage <>
  'deleted'`, as search_logged_models filters); `status` is stored as 0-3 and listed as
  UNSPECIFIED, PENDING, READY, FAILED;
- the registry leaves out prompts: registered models with the tag
  `mlflow.prompt.is_prompt = 'true'`, and every version of a name any of whose versions
  has that tag (search_model_versions' anti-join on (workspace, name)); deleted versions
  (`current_stage = 'Deleted_Internal'`, a soft delete) are not listed, nor their tags;
  a version's logged model is its `models:/m-...` source, as entities.model_id_of reads it;
- the prompts are those registered models, their versions those that carry the tag
  themselves (search_prompt_versions' filter), the template the `mlflow.prompt.text` tag;
- traces: token usage from trace_info's token columns where the store has them (MLflow
  3.17 moved it there and ignores the old `mlflow.trace.tokenUsage` metadata), else from
  that metadata's JSON; the run from the `mlflow.sourceRun` metadata; every assessment
  (an overridden feedback too), its value as JSON text and its source type standardized
  as AssessmentSource does (upper case, the legacy AI_JUDGE as LLM_JUDGE);
- issues: those of these experiments, with the distinct traces whose issue references
  name them (search_issues' include_trace_count);
- evaluation datasets: every one, its record count from its profile (`num_records`, as
  MLflow keeps it), its experiments from entity_associations (get_dataset_experiment_ids).

With MLflow workspaces (3.10+) the registry is read one workspace at a time, as MLflow
lists it with that workspace selected (names repeat across workspaces), and evaluation
datasets with their workspace. Rows are matched to their parents (tags to models,
assessments to traces) in Python, by exact string, as the listings compare them. Only the
tables in store_shape.SHAPE are named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from etl.extract import entities, store_shape
from etl.extract.reader import Records
from etl.extract.sql_store import Row, StoreSnapshot
from etl.schema import DEFAULT_WORKSPACE, empty_records, stamp_workspace

# Optional parts of the schema (store_shape.SHAPE names them the same)
REGISTRY = "the model registry"
TRACE_TOKEN_COLUMNS = "trace token columns"
TRACE_ANALYTICS = "trace names, sessions and cost columns"
ASSESSMENTS = "trace assessments"
SPAN_MODELS = "span models"
TRACE_LINKS = "trace run links"
ISSUES = store_shape.ISSUES

IS_PROMPT_TAG = entities.IS_PROMPT_TAG
DELETED_VERSION_STAGE = "Deleted_Internal"
SOURCE_RUN = entities.SOURCE_RUN
TOKEN_USAGE = entities.TOKEN_USAGE
SPAN_KEYS = (entities.SPAN_MODEL, entities.SPAN_PROVIDER, entities.SPAN_USAGE, entities.SPAN_COST)
LOGGED_MODEL_STATUS = {0: "UNSPECIFIED", 1: "PENDING", 2: "READY", 3: "FAILED"}
VALUED_ASSESSMENTS = ("feedback", "expectation")  # an issue reference has no value

_LOGGED_MODELS_SQL = (
    "select model_id, experiment_id, name, source_run_id, status, model_type, "
    "creation_timestamp_ms, last_updated_timestamp_ms, artifact_location "
    "from logged_models where lifecycle_stage <> 'deleted'"
)
_LOGGED_MODEL_CHILDREN_SQL = {
    "logged_model_params": "select model_id, param_key, param_value from logged_model_params",
    "logged_model_tags": "select model_id, tag_key, tag_value from logged_model_tags",
    "logged_model_metrics": "select model_id, metric_name, metric_value, metric_step, "
    "metric_timestamp_ms, run_id, dataset_name, dataset_digest from logged_model_metrics",
}
_VERSIONS_SQL = (
    "select name, version, source, run_id, status, current_stage, description, "
    "creation_time, last_updated_time, user_id, run_link from model_versions "
    f"where current_stage <> '{DELETED_VERSION_STAGE}'"
)
_TRACE_METADATA_KEYS = (
    SOURCE_RUN,
    TOKEN_USAGE,
    entities.TRACE_COST,
    entities.TRACE_USER,
    entities.TRACE_SESSION,
    entities.TRACE_MODEL_ID,
)
_TRACE_METADATA_SQL = (
    'select request_id, "key", value from trace_request_metadata where "key" in ('
    + ", ".join(f"'{key}'" for key in _TRACE_METADATA_KEYS)
    + ")"
)
_TRACE_TAGS_SQL = 'select request_id, "key", value from trace_tags'
_MODEL_SPANS_SQL = "select trace_id, content from spans where model_name is not null"
_TRACE_LINKS_SQL = (
    "select entity_associations.source_id, entity_associations.destination_id, "
    "runs.experiment_id from entity_associations "
    "inner join runs on runs.run_uuid = entity_associations.destination_id "
    "where entity_associations.source_type = 'trace' "
    "and entity_associations.destination_type = 'run'"
)


_ISSUES_SQL = (
    "select issue_id, experiment_id, name, description, status, severity, categories, "
    "source_run_id, created_by, created_timestamp, last_updated_timestamp from issues"
)
# search_issues(include_trace_count=True): the traces whose issue references name the issue
_ISSUE_TRACES_SQL = (
    "select name, count(distinct trace_id) from assessments "
    "where assessment_type = 'issue' group by name"
)


def listing_records(snapshot: StoreSnapshot, experiment_ids: list[str]) -> Records:
    """Every logged model (of these experiments), registered model, model version and
    trace (of these experiments), with their params, tags, metrics, aliases and
    assessments: records of entities.LISTED_TABLES, each one whole. A store without one
    of these parts leaves its tables empty."""
    records = empty_records(entities.LISTED_TABLES, workspace=True)
    experiments = set(experiment_ids)
    if store_shape.LOGGED_MODELS in snapshot.parts:
        _logged_models(snapshot, experiments, records)
    if REGISTRY in snapshot.parts:
        _registry(snapshot, records)
    if store_shape.TRACES in snapshot.parts:
        _traces(snapshot, experiments, records)
    if ISSUES in snapshot.parts:
        _issues(snapshot, experiments, records)
    if store_shape.EVALUATION_DATASETS in snapshot.parts:
        _evaluation_datasets(snapshot, records)
    return records


def _append(table: dict[str, list[Any]], *row: Any) -> None:
    for values, value in zip(table.values(), row, strict=True):
        values.append(value)


def _or_none(value: str | None) -> str | None:
    return value or None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- logged models ----------------------------------------------------------------------


def _logged_models(snapshot: StoreSnapshot, experiments: set[str], records: Records) -> None:
    listed: set[str] = set()
    for model_id, experiment_id, name, run_id, status, model_type, *rest in snapshot.rows(
        _LOGGED_MODELS_SQL
    ):
        if str(experiment_id) not in experiments:
            continue
        listed.add(model_id)
        status_text = LOGGED_MODEL_STATUS.get(status, _text(status))
        _append(
            records["logged_models"],
            model_id,
            str(experiment_id),
            name,
            _or_none(run_id),
            status_text,
            _or_none(model_type),
            *rest,
        )
    for table, sql in _LOGGED_MODEL_CHILDREN_SQL.items():
        for row in snapshot.rows(sql):
            if row[0] in listed:
                _append(records[table], *row)


# --- the model registry -----------------------------------------------------------------


def _registry(snapshot: StoreSnapshot, records: Records) -> None:
    """Each workspace's registry as MLflow lists it with that workspace selected: names
    repeat across workspaces, so every read is of one workspace."""
    if store_shape.WORKSPACES in snapshot.parts:
        found = snapshot.rows("select distinct workspace from registered_models")
        workspaces = sorted(str(workspace) for (workspace,) in found)
        reads = [(w, "workspace = :w", {"w": w}) for w in workspaces]
    else:
        reads = [(DEFAULT_WORKSPACE, "1 = 1", {})]
    for workspace, scope, params in reads:
        part = empty_records(entities.REGISTRY_TABLES + entities.PROMPT_TABLES)
        _registry_of(snapshot, scope, params, part)
        entities.merge(records, stamp_workspace(part, workspace))


def _registry_of(
    snapshot: StoreSnapshot, scope: str, params: dict[str, str], records: Records
) -> None:
    def rows(sql: str) -> list[Row]:
        return list(snapshot.rows(sql, params))

    model_tags = rows(f'select name, "key", value from registered_model_tags where {scope}')
    version_tags = rows(f'select name, version, "key", value from model_version_tags where {scope}')
    prompts = _prompt_names(model_tags)
    all_models = rows(
        "select name, description, creation_time, last_updated_time from registered_models "
        f"where {scope}"
    )
    models = {row[0]: row for row in all_models if row[0] not in prompts}
    for name, description, created, updated in models.values():
        _append(records["registered_models"], name, _or_none(description), created, updated)
    for name, key, value in model_tags:
        if name in models:
            _append(records["registered_model_tags"], name, key, value)
    aliases = rows(f"select name, alias, version from registered_model_aliases where {scope}")
    for name, alias, version in aliases:
        if name in models:
            _append(records["model_aliases"], name, alias, str(version))

    prompt_versions = _prompt_names((name, key, value) for name, _, key, value in version_tags)
    listed: set[tuple[str, str]] = set()
    versions = rows(f"{_VERSIONS_SQL} and {scope}")
    for row in versions:
        name, version, source, run_id, status, stage, description, created, updated = row[:9]
        if name in prompt_versions:
            continue
        listed.add((name, str(version)))
        _append(
            records["model_versions"],
            name,
            str(version),
            source,
            _or_none(run_id),
            _model_id_of(source),
            _text(status),
            stage,
            _or_none(description),
            created,
            updated,
            *(_or_none(text) for text in row[9:]),
        )
    for name, version, key, value in version_tags:
        if (name, str(version)) in listed:
            _append(records["model_version_tags"], name, str(version), key, value)
    _prompts(all_models, prompts, model_tags, version_tags, aliases, versions, records)


def _prompts(
    all_models: list[Row],
    prompts: set[str],
    model_tags: list[Row],
    version_tags: list[Row],
    aliases: list[Row],
    versions: list[Row],
    records: Records,
) -> None:
    """The prompt registry as search_prompts and search_prompt_versions list it: the
    registered models tagged as prompts, their tags but the marker, their aliases, and
    their versions that carry the marker themselves."""
    for name, description, created, _ in all_models:
        if name in prompts:
            _append(records["prompts"], name, _or_none(description), created)
    for name, key, value in model_tags:
        if name in prompts and key != IS_PROMPT_TAG:
            _append(records["prompt_tags"], name, key, value)
    for name, alias, version in aliases:
        if name in prompts:
            _append(records["prompt_aliases"], name, alias, str(version))
    tags_of: dict[tuple[str, str], dict[str, str]] = {}
    for name, version, key, value in version_tags:
        tags_of.setdefault((name, str(version)), {})[key] = value
    for row in versions:
        name, version, description, created, updated, user_id = (
            row[0],
            str(row[1]),
            row[6],
            row[7],
            row[8],
            row[9],
        )
        tags = tags_of.get((name, version), {})
        if name not in prompts or tags.get(IS_PROMPT_TAG) != "true":
            continue
        _append(
            records["prompt_versions"],
            *entities.prompt_version_values(name, version, tags).values(),
            _or_none(description),
            _or_none(user_id),
            created,
            updated,
        )


def _prompt_names(tags: Iterable[Row]) -> set[str]:
    """Names tagged as prompts: MLflow compares key and value case-sensitively (BINARY on
    MySQL), as Python does."""
    return {name for name, key, value in tags if key == IS_PROMPT_TAG and value == "true"}


def _model_id_of(source: str | None) -> str | None:
    """The logged model of a version registered from `models:/m-...` (entities.model_id_of)."""
    if source and source.startswith(entities.MODEL_URI_PREFIX):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


# --- traces, assessments, tags, run links and model usage -------------------------------


def _traces(snapshot: StoreSnapshot, experiments: set[str], records: Records) -> None:
    """As SqlTraceInfo.to_mlflow_entity: since 3.17 (75868b020152) the trace name, session,
    token usage and cost are trace_info columns, and the name tag and those metadata keys
    are read from the columns only; before, from the tag and the metadata."""
    token_columns = TRACE_TOKEN_COLUMNS in snapshot.parts
    analytics = TRACE_ANALYTICS in snapshot.parts
    tokens_sql = ", ".join(entities.TOKEN_KEYS) if token_columns else "null, null, null, null, null"
    analytics_sql = (
        "trace_name, session_id, " + ", ".join(entities.COST_KEYS)
        if analytics
        else "null, null, null, null, null"
    )
    sql = (
        "select request_id, experiment_id, timestamp_ms, execution_time_ms, status, "
        f"{tokens_sql}, {analytics_sql} from trace_info"
    )
    metadata: dict[tuple[str, str], str | None] = {
        (trace_id, key): value for trace_id, key, value in snapshot.rows(_TRACE_METADATA_SQL)
    }
    tags: dict[str, list[tuple[str, str | None]]] = {}
    for trace_id, key, value in snapshot.rows(_TRACE_TAGS_SQL):
        if analytics and key == entities.TRACE_NAME_TAG:
            continue  # the trace_name column stands for it
        tags.setdefault(trace_id, []).append((key, value))
    listed: set[str] = set()
    for row in snapshot.rows(sql):
        trace_id, experiment_id, request_time, duration, state = row[:5]
        tokens, (name, session, *cost) = list(row[5:10]), row[10:]
        if str(experiment_id) not in experiments:
            continue
        listed.add(trace_id)
        if not token_columns:
            usage = entities.json_object(metadata.get((trace_id, TOKEN_USAGE)))
            tokens = [usage.get(key) for key in entities.TOKEN_KEYS]
        trace_tags = tags.get(trace_id, [])
        if analytics:
            if name is not None:
                trace_tags.append((entities.TRACE_NAME_TAG, name))
        else:
            name = dict(trace_tags).get(entities.TRACE_NAME_TAG)
            session = metadata.get((trace_id, entities.TRACE_SESSION))
            costs = entities.json_object(metadata.get((trace_id, entities.TRACE_COST)))
            cost = [costs.get(key) for key in entities.COST_KEYS]
        _append(
            records["traces"],
            trace_id,
            str(experiment_id),
            metadata.get((trace_id, SOURCE_RUN)) or None,
            request_time,
            duration,
            _text(state),
            *tokens[:3],
            name or None,
            session or None,
            metadata.get((trace_id, entities.TRACE_USER)) or None,
            metadata.get((trace_id, entities.TRACE_MODEL_ID)) or None,
            *tokens[3:],
            *cost,
        )
        for key, value in trace_tags:
            _append(records["trace_tags"], trace_id, key, value)
    if ASSESSMENTS in snapshot.parts:
        _assessments(snapshot, listed, records)
    if SPAN_MODELS in snapshot.parts:
        _model_usage(snapshot, listed, records)
    links = _trace_links(snapshot) if TRACE_LINKS in snapshot.parts else iter(())
    entities.add_trace_runs(records, links)


def _assessments(snapshot: StoreSnapshot, traces: set[str], records: Records) -> None:
    sql = (
        "select trace_id, name, assessment_type, value, source_type, created_timestamp, "
        "assessment_id, valid, overrides, rationale, source_id, run_id, span_id "
        "from assessments"
    )
    for row in snapshot.rows(sql):
        trace_id, name, kind, value, source_type, created, assessment_id, valid, *rest = row
        if trace_id not in traces:
            continue
        text = _value_text(json.loads(value)) if kind in VALUED_ASSESSMENTS else None
        _append(
            records["trace_assessments"],
            trace_id,
            name,
            _source_type(source_type),
            text,
            created,
            assessment_id,
            kind,
            None if valid is None else bool(valid),
            *(_or_none(text) for text in rest),
        )


def _model_usage(snapshot: StoreSnapshot, traces: set[str], records: Records) -> None:
    """The spans that name a model, their attributes decoded as MLflow's Span does (each
    attribute value is JSON text); nothing else of a span is kept."""
    spans: dict[str, list[dict[str, Any]]] = {}
    for trace_id, content in snapshot.rows(_MODEL_SPANS_SQL):
        if trace_id in traces:
            spans.setdefault(trace_id, []).append(_span_attributes(content))
    for trace_id in sorted(spans):
        for row in entities.model_usage_rows(trace_id, spans[trace_id]):
            _append(records["trace_model_usage"], *row)


def _span_attributes(content: str) -> dict[str, Any]:
    attributes = entities.json_object(content).get("attributes")
    decoded: dict[str, Any] = {}
    for key in SPAN_KEYS:
        raw = attributes.get(key) if isinstance(attributes, dict) else None
        try:
            decoded[key] = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            decoded[key] = raw
    return decoded


def _trace_links(snapshot: StoreSnapshot) -> list[tuple[str, str]]:
    """Trace -> run links of the runs of experiments that hold traces: the runs for which
    the API source asks search_traces(run_id=...) (entities.list_trace_links)."""
    traced = {
        str(experiment_id)
        for (experiment_id,) in snapshot.rows("select distinct experiment_id from trace_info")
    }
    return [
        (trace_id, run_id)
        for trace_id, run_id, experiment_id in snapshot.rows(_TRACE_LINKS_SQL)
        if str(experiment_id) in traced
    ]


# --- the issues MLflow detected ---------------------------------------------------------


def _issues(snapshot: StoreSnapshot, experiments: set[str], records: Records) -> None:
    traces: dict[str, int] = {}
    if ASSESSMENTS in snapshot.parts:
        traces = {name: count for name, count in snapshot.rows(_ISSUE_TRACES_SQL)}
    for row in snapshot.rows(_ISSUES_SQL):
        issue_id, experiment_id, name, description, status, severity, categories = row[:7]
        if str(experiment_id) not in experiments:
            continue
        _append(
            records["issues"],
            issue_id,
            str(experiment_id),
            name,
            _or_none(description),
            status,
            severity or None,
            entities.json_list(json.loads(categories)) if categories else None,
            *(_or_none(text) for text in row[7:9]),
            *row[9:11],
            traces.get(issue_id, 0),
        )


# --- evaluation datasets ----------------------------------------------------------------

_DATASETS_SQL = (
    "select dataset_id, name, digest, profile, created_time, last_update_time, created_by, "
    "last_updated_by, {workspace} from evaluation_datasets"
)
_DATASET_TAGS_SQL = 'select dataset_id, "key", value from evaluation_dataset_tags'
_DATASET_EXPERIMENTS_SQL = (
    "select source_id, destination_id from entity_associations "
    "where source_type = 'evaluation_dataset' and destination_type = 'experiment'"
)


def _evaluation_datasets(snapshot: StoreSnapshot, records: Records) -> None:
    listed: set[str] = set()
    sql = _DATASETS_SQL.format(workspace=snapshot.workspace_of_row)
    for dataset_id, name, digest, profile, created, updated, *by, workspace in snapshot.rows(sql):
        listed.add(dataset_id)
        _append(
            records["evaluation_datasets"],
            dataset_id,
            name,
            _or_none(digest),
            entities.dataset_record_count(profile),
            created,
            updated,
            *(_or_none(user) for user in by),
            workspace,
        )
    for dataset_id, key, value in snapshot.rows(_DATASET_TAGS_SQL):
        if dataset_id in listed:
            _append(records["evaluation_dataset_tags"], dataset_id, key, value)
    for dataset_id, experiment_id in snapshot.rows(_DATASET_EXPERIMENTS_SQL):
        if dataset_id in listed:
            _append(records["evaluation_dataset_experiments"], dataset_id, str(experiment_id))


def _value_text(value: Any) -> str | None:
    """As entities.assessment_value: a string as it is, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _source_type(source_type: str | None) -> str | None:
    """As AssessmentSourceType standardizes it."""
    if source_type is None:
        return None
    upper = source_type.upper()
    return "LLM_JUDGE" if upper == "AI_JUDGE" else upper
