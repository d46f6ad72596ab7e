"""The settings the views read: time zone, zombie threshold, metric directions.

They live in small tables inside the warehouse (`runreport_settings`,
`metric_directions`); see etl/warehouse/views.py for what each view does with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb

from etl.errors import ConfigError

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


@dataclass
class ViewSettings:
    timezone: str = "UTC"
    zombie_after_hours: float = 24
    # Overrides merged over DEFAULT_METRIC_DIRECTIONS; see the module docstring.
    metric_directions: dict[str, bool] = field(default_factory=dict)

    def directions(self) -> dict[str, bool]:
        # keys match without regard to case, so an override replaces any spelling
        overrides = {key.lower(): greater for key, greater in self.metric_directions.items()}
        return {**DEFAULT_METRIC_DIRECTIONS, **overrides}


def write_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    check_settings(con, settings)
    con.execute(
        "create or replace table runreport_settings (timezone varchar, zombie_after_hours double)"
    )
    con.execute(
        "insert into runreport_settings values (?, ?)",
        [settings.timezone, float(settings.zombie_after_hours)],
    )
    con.execute(
        "create or replace table metric_directions (metric_key varchar, greater_is_better boolean)"
    )
    con.executemany(
        "insert into metric_directions values (?, ?)",
        [[key, greater] for key, greater in sorted(settings.directions().items())],
    )


def check_settings(con: duckdb.DuckDBPyConnection, settings: ViewSettings) -> None:
    known_zone = con.execute(
        "select count(*) from pg_timezone_names() where name = ?", [settings.timezone]
    ).fetchone()
    if not known_zone or not known_zone[0]:
        raise ConfigError(
            f"unknown time zone {settings.timezone!r}",
            "Use an IANA name such as UTC or Europe/Stockholm",
        )
    hours = settings.zombie_after_hours
    if (
        isinstance(hours, bool)
        or not isinstance(hours, (int, float))
        or not (math.isfinite(hours) and hours >= 0)
    ):
        raise ConfigError(
            f"zombie_after_hours must be a number of hours >= 0, not {hours!r}",
            "Set it to e.g. 24",
        )
    for key, greater in settings.metric_directions.items():
        if not isinstance(key, str) or not key.strip("* ") or not isinstance(greater, bool):
            raise ConfigError(
                f"bad metric direction {key!r} = {greater!r}",
                'Map a metric key (or "*suffix") to true (greater is better) or false',
            )
