"""What `--via sql` needs of a tracking store's schema: tables and columns, not a revision.

MLflow adds schema revisions almost every minor release, mostly to tables runreport never
reads. The reader therefore checks the shape: every column it reads exists. A store that
lacks a required one is refused, naming `table.column` and the MLflow release whose
migration added it; a store older than an optional part (datasets, model outputs, logged
models, traces, workspaces) is read without it, and those tables stay empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from etl.errors import ConfigError


@dataclass(frozen=True)
class Needed:
    """Columns the reader reads from one table, and the migration (and MLflow release)
    that added them. `part` names what a store without them has left empty; None means
    the reader cannot work without them."""

    table: str
    columns: tuple[str, ...]
    added_by: str
    part: str | None = None


RUN_COLUMNS = (
    "run_uuid",
    "experiment_id",
    "name",
    "status",
    "user_id",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "artifact_uri",
)
METRIC_COLUMNS = ("run_uuid", "key", "value", "step", "timestamp", "is_nan")

DATASETS = "datasets and run inputs"
MODEL_OUTPUTS = "model outputs"
LOGGED_MODELS = "logged models"
TRACES = "traces"
WORKSPACES = "workspaces"
ISSUES = "detected issues"
EVALUATION_DATASETS = "evaluation datasets"

SHAPE = (
    Needed("alembic_version", ("version_num",), "every MLflow SQL store"),
    Needed("experiments", ("experiment_id", "name", "artifact_location"), "MLflow 1.0"),
    Needed("experiments", ("lifecycle_stage",), "MLflow 1.0"),
    Needed("experiments", ("creation_time", "last_update_time"), "97727af70f4d, MLflow 2.0"),
    Needed("experiment_tags", ("experiment_id", "key", "value"), "MLflow 1.0"),
    Needed("runs", RUN_COLUMNS, "MLflow 1.0"),
    Needed("params", ("run_uuid", "key", "value"), "MLflow 1.0"),
    Needed("tags", ("run_uuid", "key", "value"), "MLflow 1.0"),
    Needed("metrics", METRIC_COLUMNS, "MLflow 1.x"),
    Needed("latest_metrics", METRIC_COLUMNS, "89d4b8295536, MLflow 1.x"),
    Needed("datasets", ("dataset_uuid", "name", "digest"), "7f2a7d5fae7d, MLflow 2.4", DATASETS),
    Needed(
        "datasets",
        ("dataset_source_type", "dataset_source", "dataset_schema", "dataset_profile"),
        "7f2a7d5fae7d, MLflow 2.4",
        DATASETS,
    ),
    Needed(
        "inputs",
        ("input_uuid", "source_type", "source_id", "destination_type", "destination_id"),
        "7f2a7d5fae7d, MLflow 2.4",
        DATASETS,
    ),
    Needed("input_tags", ("input_uuid", "name", "value"), "7f2a7d5fae7d, MLflow 2.4", DATASETS),
    Needed("inputs", ("step",), "6953534de441, MLflow 3.0", MODEL_OUTPUTS),
    Needed("logged_models", ("model_id",), "400f98739977, MLflow 3.0", LOGGED_MODELS),
    Needed(
        "logged_models",
        ("experiment_id", "name", "source_run_id", "status", "model_type", "lifecycle_stage"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed(
        "logged_models",
        ("creation_timestamp_ms", "last_updated_timestamp_ms", "artifact_location"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed(
        "logged_model_params",
        ("model_id", "param_key", "param_value"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed(
        "logged_model_tags",
        ("model_id", "tag_key", "tag_value"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed(
        "logged_model_metrics",
        ("model_id", "metric_name", "metric_value", "metric_step", "metric_timestamp_ms"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed(
        "logged_model_metrics",
        ("run_id", "dataset_name", "dataset_digest"),
        "400f98739977, MLflow 3.0",
        LOGGED_MODELS,
    ),
    Needed("registered_models", ("name",), "2b4d017a5e9b, MLflow 1.x", "the model registry"),
    Needed(
        "registered_models",
        ("description", "creation_time", "last_updated_time"),
        "2b4d017a5e9b, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "model_versions",
        ("name", "version", "source", "run_id", "status", "current_stage", "description"),
        "2b4d017a5e9b, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "model_versions",
        ("creation_time", "last_updated_time"),
        "2b4d017a5e9b, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "model_versions",
        ("user_id", "run_link"),
        "84291f40a231, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "registered_model_tags",
        ("name", "key", "value"),
        "728d730b5ebd, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "model_version_tags",
        ("name", "version", "key", "value"),
        "27a6a02d2cf1, MLflow 1.x",
        "the model registry",
    ),
    Needed(
        "registered_model_aliases",
        ("name", "alias", "version"),
        "3500859a5d39, MLflow 2.3",
        "the model registry",
    ),
    Needed("trace_info", ("request_id",), "867495a8f9d4, MLflow 2.14", TRACES),
    Needed(
        "trace_info",
        ("experiment_id", "timestamp_ms", "execution_time_ms", "status"),
        "867495a8f9d4, MLflow 2.14",
        TRACES,
    ),
    Needed(
        "trace_request_metadata",
        ("request_id", "key", "value"),
        "867495a8f9d4, MLflow 2.14",
        TRACES,
    ),
    Needed("trace_tags", ("request_id", "key", "value"), "867495a8f9d4, MLflow 2.14", TRACES),
    Needed(
        "trace_info",
        (
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ),
        "75868b020152, MLflow 3.17",
        "trace token columns",
    ),
    Needed(
        "trace_info",
        ("trace_name", "session_id", "input_cost", "output_cost", "total_cost"),
        "75868b020152, MLflow 3.17",
        "trace names, sessions and cost columns",
    ),
    Needed(
        "assessments",
        ("trace_id", "name", "assessment_type", "value", "source_type", "created_timestamp"),
        "770bee3ae1dd, MLflow 3.2",
        "trace assessments",
    ),
    Needed(
        "assessments",
        ("assessment_id", "valid", "overrides", "rationale", "source_id", "run_id", "span_id"),
        "770bee3ae1dd, MLflow 3.2",
        "trace assessments",
    ),
    Needed(
        "entity_associations",
        ("source_type", "source_id", "destination_type", "destination_id"),
        "de4033877273, MLflow 3.2",
        "trace run links",
    ),
    Needed(
        "spans", ("trace_id", "content", "model_name"), "75868b020152, MLflow 3.17", "span models"
    ),
    Needed("experiments", ("workspace",), "1b5f0d9ad7c1, MLflow 3.10", WORKSPACES),
    Needed(
        "issues",
        ("issue_id", "experiment_id", "name", "description", "status", "severity"),
        "76601a5f987d, MLflow 3.x",
        ISSUES,
    ),
    Needed(
        "issues",
        ("categories", "source_run_id", "created_by", "created_timestamp"),
        "76601a5f987d, MLflow 3.x",
        ISSUES,
    ),
    Needed("issues", ("last_updated_timestamp",), "76601a5f987d, MLflow 3.x", ISSUES),
    Needed(
        "evaluation_datasets",
        ("dataset_id", "name", "digest", "profile", "created_time", "last_update_time"),
        "71994744cf8e, MLflow 3.4",
        EVALUATION_DATASETS,
    ),
    Needed(
        "evaluation_datasets",
        ("created_by", "last_updated_by"),
        "71994744cf8e, MLflow 3.4",
        EVALUATION_DATASETS,
    ),
    Needed(
        "evaluation_dataset_tags",
        ("dataset_id", "key", "value"),
        "71994744cf8e, MLflow 3.4",
        EVALUATION_DATASETS,
    ),
    Needed(
        "entity_associations",
        ("source_type", "source_id", "destination_type", "destination_id"),
        "de4033877273, MLflow 3.2",
        EVALUATION_DATASETS,
    ),
)
# The tables the reader may name: a test holds every query of the reader to these, so no
# query reaches the tables that hold secrets (secrets, webhooks, jobs, gateway keys).
READ_TABLES = frozenset(needed.table for needed in SHAPE)


def present_parts(columns_of: Callable[[str], set[str]]) -> frozenset[str]:
    """The optional parts the store has; ConfigError (exit 2) naming the first required
    `table.column` it lacks. `columns_of(table)` gives a table's columns, empty when the
    table does not exist."""
    found: dict[str, set[str]] = {}
    missing_parts: set[str] = set()
    for needed in SHAPE:
        columns = found.setdefault(needed.table, columns_of(needed.table))
        lacking = [c for c in needed.columns if c.lower() not in columns]
        if not lacking:
            continue
        if needed.part is not None:
            missing_parts.add(needed.part)
            continue
        raise ConfigError(
            f"the tracking store has no column {needed.table}.{lacking[0]} (added by "
            f"{needed.added_by}): it was written by an MLflow older than runreport reads",
            "Upgrade the store with `mlflow db upgrade` (after a backup), or read it through "
            "an mlflow server of its own version with --tracking-uri http://...",
        )
    parts = {needed.part for needed in SHAPE if needed.part is not None}
    return frozenset(parts - missing_parts)
