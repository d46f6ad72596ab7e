"""The warehouse tables (a contract: see DESIGN.md). Times travel as epoch milliseconds
from extract to load and are stored as UTC TIMESTAMPTZ."""

from __future__ import annotations

from typing import Any

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
}

# Tables whose rows belong to a run: an incremental load replaces a run's rows in each.
RUN_TABLES = ("runs", "params", "metrics", "tags", "metric_history")

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
    error varchar
)
"""


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


def empty_records() -> dict[str, dict[str, list[Any]]]:
    """A fresh columnar batch: table -> column -> values."""
    return {table: {name: [] for name in column_names(table)} for table in TABLES}
