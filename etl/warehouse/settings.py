"""The settings the views read: time zone, zombie threshold, metric directions, the
primary metric the team chose per experiment, and the experiments whose long runs are
not zombies. Each is a setting of etl/config.py, which declares its default and holds its
one check (`checked`); `ViewSettings` carries them to the warehouse.

They live in small tables inside the warehouse (`SETTINGS_TABLES`); see
etl/warehouse/views.py for what each view does with them. `write_settings` stores them
when the warehouse is built; `apply_settings` lays them over the stored ones for one
read-only connection (as TEMP tables, which the views read in place of the stored
tables of the same name), so a report applies the config without a new extract.

- `primary_metrics`: experiment name or glob (`*` any text, `?` one character; case
  matters) -> metric key, from `[metrics.primary]`. It wins over the experiment's
  `mlflow.experiment.primaryMetric.name` tag and the naming rule; an exact name wins over
  a glob, and among globs the first one listed wins. Its direction comes from
  `metric_directions` (and so from `[metrics]`).
- `zombie_ignore`: experiment globs (`report.zombie_ignore`) whose RUNNING runs are never
  listed as zombies.
- `child_metrics` (`[metrics.children]`, the same globs as `primary_metrics`) -> the
  metric nested searches rank their children by: table `child_metric_choices`.
- `leaderboard_runs` (`report.leaderboard_runs`) and `leaderboard_runs_by_experiment`
  (`[report.leaderboard_runs_by_experiment]`, globs as above) -> which runs each
  experiment's leaderboard ranks: table `leaderboard_scope`, the globs in their order and
  then `*` with `leaderboard_runs`.
- `seed_params` (`[metrics] seed_params`) -> table `seed_params`: the param keys (lower
  case) that only seed a run, DEFAULT_SEED_PARAMS and yours.
- `estimator_from` and `user_tag` (`report.estimator_from`, `report.user_tag`) -> table
  `run_keys`: where run_overview reads a run's estimator (a tag or param key, or
  `run_name`) and runs_per_user its user (a tag, else MLflow's user_id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from etl.config import Config, checked, default

# Every table the views read settings from; a new warehouse copies them from the old one.
SETTINGS_TABLES = (
    "runreport_settings",
    "metric_directions",
    "primary_metric_choices",
    "zombie_ignore",
    "child_metric_choices",
    "leaderboard_scope",
    "seed_params",
    "run_keys",
)

LOWER_IS_BETTER = (
    "loss",
    "mse",
    "rmse",
    "mae",
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_error",
    "log_loss",
    "*_loss",
    "*_mse",
    "*_rmse",
    "*_mae",
    "*_error",
)
GREATER_IS_BETTER = (
    "r2",
    "r2_score",
    "accuracy",
    "accuracy_score",
    "f1",
    "f1_score",
    "auc",
    "roc_auc",
    "precision",
    "recall",
    "*_r2",
    "*_accuracy",
    "*_f1",
    "*_auc",
    "*_score",
)
# Param keys that only seed a run: runs differing only by them are one configuration.
DEFAULT_SEED_PARAMS = ("seed", "random_state", "random_seed")
DEFAULT_METRIC_DIRECTIONS: dict[str, bool] = {
    **{key: False for key in LOWER_IS_BETTER},
    **{key: True for key in GREATER_IS_BETTER},
}


# The fields of ViewSettings, each a setting of Config of the same name.
VIEW_SETTINGS = (
    "timezone",
    "zombie_after_hours",
    "metric_directions",
    "primary_metrics",
    "zombie_ignore",
    "child_metrics",
    "leaderboard_runs",
    "leaderboard_runs_by_experiment",
    "seed_params",
    "estimator_from",
    "user_tag",
)


@dataclass
class ViewSettings:
    timezone: str = default("timezone")
    zombie_after_hours: float = default("zombie_after_hours")
    # Overrides merged over DEFAULT_METRIC_DIRECTIONS; see the module docstring.
    metric_directions: dict[str, bool] = field(default_factory=dict)
    primary_metrics: dict[str, str] = field(default_factory=dict)
    zombie_ignore: list[str] = field(default_factory=list)
    child_metrics: dict[str, str] = field(default_factory=dict)
    leaderboard_runs: str = default("leaderboard_runs")
    leaderboard_runs_by_experiment: dict[str, str] = field(default_factory=dict)
    seed_params: list[str] = field(default_factory=list)  # added to DEFAULT_SEED_PARAMS
    estimator_from: str = default("estimator_from")
    user_tag: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> ViewSettings:
        return cls(
            timezone=config.timezone,
            zombie_after_hours=config.zombie_after_hours,
            metric_directions=dict(config.metric_directions),
            primary_metrics=dict(config.primary_metrics),
            zombie_ignore=list(config.zombie_ignore),
            child_metrics=dict(config.child_metrics),
            leaderboard_runs=config.leaderboard_runs,
            leaderboard_runs_by_experiment=dict(config.leaderboard_runs_by_experiment),
            seed_params=list(config.seed_params),
            estimator_from=config.estimator_from,
            user_tag=config.user_tag,
        )

    @classmethod
    def given_in(cls, config: Config) -> ViewSettings | None:
        """The settings when the user gave any of them (file, environment or flag), else
        None: the warehouse keeps those it holds."""
        return cls.from_config(config) if config.given & set(VIEW_SETTINGS) else None

    def check(self) -> None:
        """Each setting by its one check in etl/config.py (a ConfigError names its key)."""
        for name in VIEW_SETTINGS:
            if getattr(self, name) is not None:  # None: not set (user_tag)
                checked(name, getattr(self, name))

    def directions(self) -> dict[str, bool]:
        # keys match without regard to case, so an override replaces any spelling
        overrides = checked("metric_directions", self.metric_directions)
        overrides = {key.lower(): greater for key, greater in overrides.items()}
        return {**DEFAULT_METRIC_DIRECTIONS, **overrides}


def glob_to_like(pattern: str) -> str:
    """A glob (* and ?) as a LIKE pattern with \\ as its escape: plain SQL, also in Spark."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _by_experiment(table: dict[str, str]) -> list[list[object]]:
    """Rows of experiment glob -> value: pattern, name_like, value, is_exact, position."""
    return [
        [pattern, glob_to_like(pattern), value, not any(c in pattern for c in "*?"), position]
        for position, (pattern, value) in enumerate(table.items())
    ]


def _tables(settings: ViewSettings) -> dict[str, tuple[str, list[list[object]]]]:
    """Each settings table: its columns and its rows."""
    choice_columns = (
        "pattern varchar, name_like varchar, metric_key varchar, is_exact boolean, position integer"
    )
    runs = checked("leaderboard_runs", settings.leaderboard_runs)
    scope = checked("leaderboard_runs_by_experiment", settings.leaderboard_runs_by_experiment)
    seeds = sorted({key.lower() for key in (*DEFAULT_SEED_PARAMS, *settings.seed_params)})
    return {
        "runreport_settings": (
            "timezone varchar, zombie_after_hours double",
            [[settings.timezone, float(settings.zombie_after_hours)]],
        ),
        "metric_directions": (
            "metric_key varchar, greater_is_better boolean",
            [[key, greater] for key, greater in sorted(settings.directions().items())],
        ),
        "primary_metric_choices": (choice_columns, _by_experiment(settings.primary_metrics)),
        "zombie_ignore": (
            "pattern varchar, name_like varchar",
            [[pattern, glob_to_like(pattern)] for pattern in settings.zombie_ignore],
        ),
        "child_metric_choices": (choice_columns, _by_experiment(settings.child_metrics)),
        # the globs in their order, then every experiment ('*', never exact) last
        "leaderboard_scope": (
            "pattern varchar, name_like varchar, runs varchar, is_exact boolean, position integer",
            [*_by_experiment(scope), ["*", "%", runs, False, len(scope)]],
        ),
        "seed_params": ("param_key varchar", [[key] for key in seeds]),
        "run_keys": (
            "estimator_from varchar, user_tag varchar",
            [[settings.estimator_from, settings.user_tag]],
        ),
    }


def write_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    """Store the settings in the warehouse (a writable connection)."""
    _write(con, settings, "table")


def apply_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    """Lay the settings over the stored ones for this connection only; works read-only."""
    _write(con, settings, "temp table")


def write_missing_settings(con: duckdb.DuckDBPyConnection, present: set[str]) -> None:
    """The default settings in the tables a warehouse lacks (one made before they
    existed), leaving the tables it holds as they are."""
    _write(con, ViewSettings(), "table", set(SETTINGS_TABLES) - present)


def _write(
    con: duckdb.DuckDBPyConnection,
    settings: ViewSettings,
    kind: str,
    only: set[str] | None = None,
) -> None:
    settings.check()
    for name, (columns, rows) in _tables(settings).items():
        if only is not None and name not in only:
            continue
        con.execute(f"create or replace {kind} {name} ({columns})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            con.executemany(f"insert into {name} values ({marks})", rows)
