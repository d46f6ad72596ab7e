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
)


@dataclass
class ViewSettings:
    timezone: str = default("timezone")
    zombie_after_hours: float = default("zombie_after_hours")
    # Overrides merged over DEFAULT_METRIC_DIRECTIONS; see the module docstring.
    metric_directions: dict[str, bool] = field(default_factory=dict)
    primary_metrics: dict[str, str] = field(default_factory=dict)
    zombie_ignore: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config) -> ViewSettings:
        return cls(
            timezone=config.timezone,
            zombie_after_hours=config.zombie_after_hours,
            metric_directions=dict(config.metric_directions),
            primary_metrics=dict(config.primary_metrics),
            zombie_ignore=list(config.zombie_ignore),
        )

    @classmethod
    def given_in(cls, config: Config) -> ViewSettings | None:
        """The settings when the user gave any of them (file, environment or flag), else
        None: the warehouse keeps those it holds."""
        return cls.from_config(config) if config.given & set(VIEW_SETTINGS) else None

    def check(self) -> None:
        """Each setting by its one check in etl/config.py (a ConfigError names its key)."""
        for name in VIEW_SETTINGS:
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


def _tables(settings: ViewSettings) -> dict[str, tuple[str, list[list[object]]]]:
    """Each settings table: its columns and its rows."""
    choices = [
        [pattern, glob_to_like(pattern), key, not any(c in pattern for c in "*?"), position]
        for position, (pattern, key) in enumerate(settings.primary_metrics.items())
    ]
    return {
        "runreport_settings": (
            "timezone varchar, zombie_after_hours double",
            [[settings.timezone, float(settings.zombie_after_hours)]],
        ),
        "metric_directions": (
            "metric_key varchar, greater_is_better boolean",
            [[key, greater] for key, greater in sorted(settings.directions().items())],
        ),
        "primary_metric_choices": (
            "pattern varchar, name_like varchar, metric_key varchar, is_exact boolean, "
            "position integer",
            choices,
        ),
        "zombie_ignore": (
            "pattern varchar, name_like varchar",
            [[pattern, glob_to_like(pattern)] for pattern in settings.zombie_ignore],
        ),
    }


def write_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    """Store the settings in the warehouse (a writable connection)."""
    _write(con, settings, "table")


def apply_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    """Lay the settings over the stored ones for this connection only; works read-only."""
    _write(con, settings, "temp table")


def _write(con: duckdb.DuckDBPyConnection, settings: ViewSettings, kind: str) -> None:
    settings.check()
    for name, (columns, rows) in _tables(settings).items():
        con.execute(f"create or replace {kind} {name} ({columns})")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            con.executemany(f"insert into {name} values ({marks})", rows)
