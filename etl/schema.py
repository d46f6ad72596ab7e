"""The warehouse tables (a contract: see docs/contract.md). Times travel as epoch milliseconds
from extract to load and are stored as UTC TIMESTAMPTZ."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The warehouse's layout version, stored in runreport_meta. Bump it when a table or column
# changes: an incremental extract of a warehouse with another version does a full one.
# 2: runreport_meta itself and extract_log.warnings.
# 3: MLflow 3's datasets, run inputs/outputs, logged models, registry, traces.
# 4: GenAI (issue #24): trace names, sessions, users, cost, tags, runs and model usage;
#    assessment types, validity and overrides.
# 5: prompts (issue #24): prompts, prompt_tags, prompt_versions, prompt_aliases; prompt alias
#    moves in model_alias_history (its `kind`); model_versions.user_id and run_link; the
#    issues MLflow detected in traces.
# 6: evaluation datasets (issue #24): evaluation_datasets, evaluation_dataset_tags,
#    evaluation_dataset_experiments; run_model_inputs (a run table).
# 7: MLflow workspaces (issue #24): a workspace column on WORKSPACE_TABLES and on
#    model_alias_history.
SCHEMA_VERSION = 7
META_TABLE = "runreport_meta"
# the column a warehouse combined from [[sources]] names each row's tracking store by
SOURCE_COLUMN = "tracking_source"
# the column naming the MLflow workspace (3.10+, `mlflow server --enable-workspaces`) a row
# belongs to; a store without workspaces keeps everything in MLflow's default one
WORKSPACE_COLUMN = "workspace"
DEFAULT_WORKSPACE = "default"

# table -> [(column, duckdb type)]; "ms" marks an epoch-millisecond column stored as timestamptz.
TABLES: dict[str, list[tuple[str, str]]] = {
    "experiments": [
        ("experiment_id", "varchar"),
        ("name", "varchar"),
        ("artifact_location", "varchar"),
        ("lifecycle_stage", "varchar"),
        ("creation_time", "ms"),
        ("last_update_time", "ms"),
    ],
    "experiment_tags": [("experiment_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "runs": [
        ("run_id", "varchar"),
        ("experiment_id", "varchar"),
        ("run_name", "varchar"),
        ("status", "varchar"),
        ("user_id", "varchar"),
        ("start_time", "ms"),
        ("end_time", "ms"),
        ("lifecycle_stage", "varchar"),
        ("artifact_uri", "varchar"),
    ],
    "params": [("run_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "metrics": [
        ("run_id", "varchar"),
        ("key", "varchar"),
        ("value", "double"),
        ("step", "bigint"),
        ("timestamp", "ms"),
    ],
    "tags": [("run_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "metric_history": [
        ("run_id", "varchar"),
        ("key", "varchar"),
        ("value", "double"),
        ("step", "bigint"),
        ("timestamp", "ms"),
    ],
    # MLflow 3, beyond the run row (etl.extract.entities)
    "datasets": [
        ("name", "varchar"),
        ("digest", "varchar"),
        ("source_type", "varchar"),
        ("source", "varchar"),
        ("schema", "varchar"),
        ("profile", "varchar"),
    ],
    "run_inputs": [
        ("run_id", "varchar"),
        ("dataset_name", "varchar"),
        ("dataset_digest", "varchar"),
        ("context", "varchar"),
    ],
    "run_outputs": [("run_id", "varchar"), ("model_id", "varchar"), ("step", "bigint")],
    # the logged models a run took as input (evaluated): RunInputs.model_inputs
    "run_model_inputs": [("run_id", "varchar"), ("model_id", "varchar")],
    "logged_models": [
        ("model_id", "varchar"),
        ("experiment_id", "varchar"),
        ("name", "varchar"),
        ("source_run_id", "varchar"),
        ("status", "varchar"),
        ("model_type", "varchar"),
        ("creation_time", "ms"),
        ("last_updated_time", "ms"),
        ("artifact_location", "varchar"),
    ],
    "logged_model_params": [("model_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "logged_model_tags": [("model_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "logged_model_metrics": [
        ("model_id", "varchar"),
        ("key", "varchar"),
        ("value", "double"),
        ("step", "bigint"),
        ("timestamp", "ms"),
        ("run_id", "varchar"),
        ("dataset_name", "varchar"),
        ("dataset_digest", "varchar"),
    ],
    "registered_models": [
        ("name", "varchar"),
        ("description", "varchar"),
        ("creation_time", "ms"),
        ("last_updated_time", "ms"),
    ],
    "registered_model_tags": [("name", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "model_versions": [
        ("name", "varchar"),
        ("version", "varchar"),
        ("source", "varchar"),
        ("run_id", "varchar"),
        ("model_id", "varchar"),
        ("status", "varchar"),
        ("current_stage", "varchar"),
        ("description", "varchar"),
        ("creation_time", "ms"),
        ("last_updated_time", "ms"),
        ("user_id", "varchar"),
        ("run_link", "varchar"),
    ],
    "model_version_tags": [
        ("name", "varchar"),
        ("version", "varchar"),
        ("key", "varchar"),
        ("value", "varchar"),
    ],
    "model_aliases": [("name", "varchar"), ("alias", "varchar"), ("version", "varchar")],
    # the prompt registry: registered models tagged mlflow.prompt.is_prompt, as search_prompts
    # and search_prompt_versions list them
    "prompts": [("name", "varchar"), ("description", "varchar"), ("creation_time", "ms")],
    "prompt_tags": [("name", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "prompt_versions": [
        ("name", "varchar"),
        ("version", "varchar"),
        ("template", "varchar"),
        ("prompt_type", "varchar"),
        ("commit_message", "varchar"),
        ("user_id", "varchar"),
        ("creation_time", "ms"),
        ("last_updated_time", "ms"),
    ],
    "prompt_aliases": [("name", "varchar"), ("alias", "varchar"), ("version", "varchar")],
    "traces": [
        ("trace_id", "varchar"),
        ("experiment_id", "varchar"),
        ("run_id", "varchar"),
        ("request_time", "ms"),
        ("execution_duration_ms", "bigint"),
        ("state", "varchar"),
        ("input_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("total_tokens", "bigint"),
        ("trace_name", "varchar"),
        ("session_id", "varchar"),
        ("user", "varchar"),
        ("model_id", "varchar"),
        ("cache_read_input_tokens", "bigint"),
        ("cache_creation_input_tokens", "bigint"),
        ("input_cost", "double"),
        ("output_cost", "double"),
        ("total_cost", "double"),
    ],
    "trace_assessments": [
        ("trace_id", "varchar"),
        ("name", "varchar"),
        ("source_type", "varchar"),
        ("value", "varchar"),
        ("create_time", "ms"),
        ("assessment_id", "varchar"),
        ("assessment_type", "varchar"),
        ("valid", "boolean"),
        ("overrides", "varchar"),
        ("rationale", "varchar"),
        ("source_id", "varchar"),
        ("run_id", "varchar"),
        ("span_id", "varchar"),
    ],
    "trace_tags": [("trace_id", "varchar"), ("key", "varchar"), ("value", "varchar")],
    "trace_runs": [("trace_id", "varchar"), ("run_id", "varchar")],
    # the quality or operational problems MLflow detected in traces (search_issues)
    "issues": [
        ("issue_id", "varchar"),
        ("experiment_id", "varchar"),
        ("name", "varchar"),
        ("description", "varchar"),
        ("status", "varchar"),
        ("severity", "varchar"),
        ("categories", "varchar"),
        ("source_run_id", "varchar"),
        ("created_by", "varchar"),
        ("created_time", "ms"),
        ("last_updated_time", "ms"),
        ("traces", "bigint"),
    ],
    # MLflow's GenAI evaluation datasets (search_datasets), without their records' contents
    "evaluation_datasets": [
        ("dataset_id", "varchar"),
        ("name", "varchar"),
        ("digest", "varchar"),
        ("records", "bigint"),
        ("created_time", "ms"),
        ("last_update_time", "ms"),
        ("created_by", "varchar"),
        ("last_updated_by", "varchar"),
    ],
    "evaluation_dataset_tags": [
        ("dataset_id", "varchar"),
        ("key", "varchar"),
        ("value", "varchar"),
    ],
    "evaluation_dataset_experiments": [("dataset_id", "varchar"), ("experiment_id", "varchar")],
    # per trace and model: the spans that called it, summed (span contents stay out)
    "trace_model_usage": [
        ("trace_id", "varchar"),
        ("model_name", "varchar"),
        ("model_provider", "varchar"),
        ("calls", "bigint"),
        ("input_tokens", "bigint"),
        ("output_tokens", "bigint"),
        ("cost", "double"),
    ],
}

# Tables whose rows belong to a workspace by a name that is unique only within it (the
# registry, prompts, experiments) or that MLflow lists per workspace (evaluation datasets).
# Run, trace and logged-model rows belong to their experiment's: experiment ids are one
# sequence across workspaces. The workspace column comes last; the sources stamp it
# (`stamp_workspace`), or read it where the store keeps it (`empty_records(workspace=True)`).
WORKSPACE_TABLES = (
    "experiments",
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "model_aliases",
    "prompts",
    "prompt_tags",
    "prompt_versions",
    "prompt_aliases",
    "evaluation_datasets",
)
for _table in WORKSPACE_TABLES:
    TABLES[_table].append((WORKSPACE_COLUMN, "varchar"))

# Tables whose rows belong to a run: an incremental load replaces a run's rows in each.
RUN_TABLES = (
    "runs",
    "params",
    "metrics",
    "tags",
    "metric_history",
    "run_inputs",
    "run_outputs",
    "run_model_inputs",
)

# One row each time an extract sees an alias point somewhere new (version NULL: it
# vanished), of a registered model (kind 'model') or a prompt ('prompt'). Not in TABLES: no
# extract writes it from records, and a full rebuild keeps it.
ALIAS_HISTORY_DDL = """
create table if not exists model_alias_history (
    observed_at timestamptz,
    name varchar,
    alias varchar,
    version varchar,
    kind varchar,
    workspace varchar
)
"""

EXTRACT_LOG_DDL = """
create table if not exists extract_log (
    extract_id integer,
    started_at timestamptz,
    ended_at timestamptz,
    mode varchar,
    tracking_uri varchar,
    runs_seen bigint,
    experiments_seen bigint,
    watermark timestamptz,
    status varchar,
    error varchar,
    warnings bigint
)
"""
EXTRACT_LOG_COLUMNS = (
    "extract_id",
    "started_at",
    "ended_at",
    "mode",
    "tracking_uri",
    "runs_seen",
    "experiments_seen",
    "watermark",
    "status",
    "error",
    "warnings",
)
META_DDL = f"create or replace table {META_TABLE} (key varchar, value varchar)"


def column_names(table: str) -> list[str]:
    return [name for name, _ in TABLES[table]]


def create_table_sql(table: str) -> str:
    cols = ", ".join(
        f"{name} {'timestamptz' if kind == 'ms' else kind}" for name, kind in TABLES[table]
    )
    return f"create table if not exists {table} ({cols})"


def insert_select_sql(table: str, source: str) -> str:
    """insert into TABLE select ... from SOURCE, turning epoch-ms columns into timestamptz."""
    exprs = [
        f"epoch_ms({name})::timestamptz" if kind == "ms" else name for name, kind in TABLES[table]
    ]
    return f"insert into {table} select {', '.join(exprs)} from {source}"


EXPERIMENT_TABLES = ("experiments", "experiment_tags")


def empty_records(
    tables: Iterable[str] = TABLES, workspace: bool = False
) -> dict[str, dict[str, list[Any]]]:
    """A fresh columnar batch of these tables (default every one): table -> column -> values.
    Without `workspace` the workspace column is left out, for `stamp_workspace` to add."""

    def columns(table: str) -> list[str]:
        names = column_names(table)
        return names if workspace or table not in WORKSPACE_TABLES else names[:-1]

    return {table: {name: [] for name in columns(table)} for table in tables}


def stamp_workspace(
    records: dict[str, dict[str, list[Any]]], workspace: str
) -> dict[str, dict[str, list[Any]]]:
    """Give every row of the WORKSPACE_TABLES in `records` this workspace."""
    for table, columns in records.items():
        if table in WORKSPACE_TABLES and WORKSPACE_COLUMN not in columns:
            rows = len(next(iter(columns.values())))
            columns[WORKSPACE_COLUMN] = [workspace] * rows
    return records
