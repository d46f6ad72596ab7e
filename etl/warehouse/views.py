"""The SQL views of sql/ (one SELECT per file, named after the file), the settings they
read, and the runs_wide views, all created inside the warehouse so that anyone opening it
with DuckDB sees them.

Settings (`ViewSettings`, written to the small tables of
etl/warehouse/settings.py's `SETTINGS_TABLES` that the views read; their defaults are
declared in etl/config.py):

- `timezone` (report.timezone): the IANA time zone of `run_overview.start_date` and so
  of `runs_per_day` and `traces_per_day`. Every time column stays a UTC TIMESTAMPTZ; only
  the dates move. Stored in `runreport_settings.timezone`.
- `zombie_after_hours` (report.zombie_after_hours): a RUNNING run that started longer ago
  than this is listed in `zombie_runs`. Stored in `runreport_settings.zombie_after_hours`.
- `metric_directions` ([metrics]): metric key -> True when greater is better, False when
  lower is better. Your entries are merged over the defaults below (yours win) and stored
  in the table `metric_directions(metric_key, greater_is_better)`.
- `primary_metrics` ([metrics.primary]) and `zombie_ignore` (report.zombie_ignore), in
  the tables `primary_metric_choices` and `zombie_ignore`: see etl/warehouse/settings.py.

The primary metric of an experiment (view `experiment_primary_metric`, read by
`ranked_runs`, `leaderboard` and the other views that rank runs or models), over the runs
its leaderboard ranks (`leaderboard_runs`: by default the root runs, those without an
`mlflow.parentRunId` tag; all runs where no root run has a value of their metric):

1. `[metrics.primary]` (source 'config'), then the experiment tags
   `mlflow.experiment.primaryMetric.name` and
   `mlflow.experiment.primaryMetric.greaterIsBetter` ("True"/"False", any case), where
   the name tag is set (source 'tag'). Without a valid greaterIsBetter tag, the direction
   comes from the rule in 2; if the rule does not know the key either, the direction is
   NULL and the experiment has no leaderboard row.
2. Otherwise the name rule (source 'rule'): among the metric keys those runs logged, the
   ones the direction table knows; a training key (train_loss, training_accuracy_score)
   ranks below a key of the same kind that is not one (val_loss, accuracy), then the key
   logged by the most runs wins, ties go to the first key by name ignoring case. An
   experiment with no such key has no primary metric.

Nested searches rank their children by the child metric (`child_metric_key`), chosen the
same way over the children: `[metrics.children]`, then the primary choice or tag when a
child logged it, then the rule.

The direction of a key comes from one view, `metric_key_directions` (read by
`experiment_primary_metric` and `metric_curves`), which matches the direction table's
entries without regard to case. An entry is either an exact key or a pattern `*suffix`
matching every key that ends with the suffix; an exact entry wins over a pattern, a longer
pattern over a shorter one. The defaults are `LOWER_IS_BETTER` and `GREATER_IS_BETTER` in
etl/warehouse/settings.py: loss, mse, rmse, mae, ... and keys ending in _loss, _error, ...
are lower-is-better; r2, accuracy, f1, auc, ... and keys ending in _score, _accuracy, ...
greater-is-better.

So `val_loss` and `training_mean_squared_error` are lower-is-better,
`training_r2_score` greater-is-better; `{"*_score": False}` or `{"val_loss": True}`
override them.

Nesting (view `run_overview`): a run is a nested child when it has an
`mlflow.parentRunId` tag, a nested parent when some run (deleted ones too) names it in
that tag. `root_run_id` and `depth` come from walking the tags upward with a recursive
query, depth 0 at the top. The walk goes through deleted parents (they are still in the
store) and ends at the last run the store holds: a run whose parent is missing is its own
root (depth 0) and a run below it counts only the ancestors that exist. OSS MLflow never
writes `mlflow.rootRunId`; where the walk ends at a run carrying that tag (Databricks)
and it names another run in the store, that run is the root. A corrupt tag cycle ends the
walk at the last run before a repeat, and the walk never goes deeper than 1,000 levels.

"Finite" values: MLflow's SQL stores save +inf and -inf as ±1.7976931348623157e308 (the
largest double), so the views treat that value like ±inf: NaN and ±inf never win a
leaderboard or a search and stay out of min, max and mean in metric_summary.

runs_wide_all is a view that create_views writes for the keys the warehouse holds (SQL
alone cannot pivot over keys it does not know), with the columns `mlflow.search_runs`
returns: run_id, experiment_id, status, artifact_uri, start_time, end_time, then
lifecycle_stage, "metrics.<key>", "params.<key>" and "tags.<key>" (keys in alphabetical
order); every run, deleted ones too. runs_wide has the same columns and holds the rows
`mlflow.search_runs(search_all_experiments=True)` returns by default: the active runs of
active experiments. Views, not tables: a table with thousands of key columns needs
gigabytes of memory to build (measured: out of memory at 2 GB for 100,000 runs and 3,065
keys) and stores every value twice; a view costs nothing until it is read.

DuckDB column names ignore case, so keys that differ only by case cannot all have their
plain column name. The plain name "<prefix>.<key>" goes to the key spelled in lower case
when there is one (so "metrics.loss" is the key `loss`, not `LOSS`), else to the first in
sort order; the others get "<prefix>.<key>#2", "#3", ... in sort order, each keeping its
own spelling ("metrics.LOSS#2").
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from etl.errors import JobFailed
from etl.resources import sql_dir
from etl.warehouse.connect import quote_ident, quote_literal, table_names
from etl.warehouse.settings import ViewSettings, write_missing_settings, write_settings

# runs_wide columns ahead of the metric, param and tag columns, as mlflow.search_runs
# orders them (lifecycle_stage added: runs_wide holds deleted runs too).
WIDE_RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "status",
    "artifact_uri",
    "start_time",
    "end_time",
    "lifecycle_stage",
)
WIDE_SOURCES = ("metrics", "params", "tags")


def view_files(folder: Path | None = None) -> dict[str, Path]:
    folder = folder or sql_dir()
    return {path.stem: path for path in sorted(folder.glob("*.sql"))}


def create_views(
    con: duckdb.DuckDBPyConnection,
    settings: ViewSettings | None = None,
    folder: Path | None = None,
) -> list[str]:
    """Write the settings tables, create or replace every view, then rebuild runs_wide.
    Without settings, the settings tables the warehouse holds stay (defaults where it has
    none). Returns the names of the views created."""
    if settings is not None:
        write_settings(con, settings)
    else:
        write_missing_settings(con, table_names(con))
    created = _create_sql_views(con, folder)
    create_runs_wide(con)
    return created


def _create_sql_views(con: duckdb.DuckDBPyConnection, folder: Path | None) -> list[str]:
    """Views may select from each other in any file order: retry those whose inputs are
    not made yet (or are older versions) until a round creates nothing; then the error
    (catalog, binder, parser, ...) names the file at its root."""
    pending = {name: path.read_text() for name, path in view_files(folder).items()}
    created: list[str] = []
    while pending:
        errors: dict[str, str] = {}
        created_before = len(created)
        for name, body in list(pending.items()):
            try:
                con.execute(f"create or replace view {name} as\n{body.rstrip().rstrip(';')}")
            except (duckdb.IOException, duckdb.TransactionException):
                raise  # the disk, not the view file
            except duckdb.Error as exc:
                errors[name] = " ".join(str(exc).split())
                continue
            created.append(name)
            del pending[name]
        if len(created) == created_before:
            # the root cause is a view whose error names no other view still pending
            name, message = min(
                errors.items(),
                key=lambda item: any(o in item[1] for o in pending if o != item[0]),
            )
            raise JobFailed(
                f"view {name} (sql/{name}.sql) cannot be created: {message}",
                f"Fix sql/{name}.sql",
            )
    return created


def create_runs_wide(con: duckdb.DuckDBPyConnection) -> None:
    """One row per run, one column per metric, param and tag key, like mlflow.search_runs:
    runs_wide_all (every run) and runs_wide (active runs of active experiments).

    Each run's keys go into one map per source and every column is a lookup in it, so a
    query reading a few columns computes only those."""
    selects = [f"runs.{name}" for name in WIDE_RUN_COLUMNS]
    joins = []
    for table in WIDE_SOURCES:
        keys = [key for (key,) in con.execute(f"select distinct key from {table}").fetchall()]
        if not keys:
            continue
        joins.append(
            f"left join (select run_id, map_from_entries(list(struct_pack(k := key, "
            f"v := value))) as entries from {table} group by run_id) as {table}_map "
            f"on {table}_map.run_id = runs.run_id"
        )
        for key, column in wide_columns(table, keys):
            selects.append(f"{table}_map.entries[{quote_literal(key)}] as {quote_ident(column)}")
    # warehouses built before runs_wide became a view hold it as a table
    if "runs_wide" in table_names(con):
        con.execute("drop table runs_wide")
    con.execute(
        f"create or replace view runs_wide_all as select {', '.join(selects)} from runs "
        f"{' '.join(joins)}"
    )
    con.execute(
        "create or replace view runs_wide as select * from runs_wide_all "
        "where lifecycle_stage = 'active' and experiment_id in "
        "(select experiment_id from experiments where lifecycle_stage = 'active')"
    )


def wide_columns(prefix: str, keys: list[str]) -> list[tuple[str, str]]:
    """(key, column name) in key order; see the module docstring for keys that differ
    only by case."""
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        groups.setdefault(key.lower(), []).append(key)
    named: dict[str, str] = {}
    for spellings in groups.values():
        plain = spellings[0].lower() if spellings[0].lower() in spellings else spellings[0]
        others = [key for key in spellings if key != plain]
        named[plain] = f"{prefix}.{plain}"
        for number, key in enumerate(others, start=2):
            named[key] = f"{prefix}.{key}#{number}"
    return sorted(named.items())
