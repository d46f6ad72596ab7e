"""The Python API: the jobs of the command line as functions, for a notebook or an
Airflow/Dagster task. Settings resolve exactly as on the command line (etl/config.py):
defaults < `config` file < RUNREPORT_* / MLFLOW_* variables < the keyword arguments, which
take the names of etl.config.Config's fields (db, out, days, timezone, metric_history, ...).
Any other keyword is a TypeError that names the closest one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.config import SETTINGS, resolve

if TYPE_CHECKING:
    import duckdb

    from etl.refresh import ExtractSummary
    from etl.report.render import ReportResult

PathLike = str | Path


def extract_warehouse(
    tracking_uri: str | None = None,
    db: PathLike | None = None,
    *,
    incremental: bool = False,
    allow_shrink: bool = False,
    config: PathLike | None = None,
    **settings: Any,
) -> ExtractSummary:
    """Extract every run (or, with `incremental=True`, those that can have changed) from
    the tracking store into the DuckDB warehouse `db`; returns counts and timing.

    >>> etl.extract_warehouse("sqlite:///mlflow.db", "runs.duckdb")  # doctest: +SKIP
    """
    _known_settings(extract_warehouse, settings)
    from etl.refresh import extract_from_config  # lazy: MLflow takes seconds to import

    resolved = resolve(_path(config), {"tracking_uri": tracking_uri, "db": db, **settings})
    return extract_from_config(
        resolved, "incremental" if incremental else "full", allow_shrink=allow_shrink
    )


def render_report(
    db: PathLike | None = None,
    out: PathLike | None = None,
    *,
    since: date | None = None,
    config: PathLike | None = None,
    **settings: Any,
) -> ReportResult:
    """Render index.html, email.html, summary.txt, report.json and the CSVs into `out`
    (replaced whole); what changed is measured against the report.json already there."""
    _known_settings(render_report, settings)
    # lazy: `import etl` loads none of the report's libraries (Jinja, matplotlib)
    from etl.report.render import render_from_config

    resolved = resolve(_path(config), {"db": db, "out": out, **settings})
    return render_from_config(resolved, resolved.out, since=since)


def connect(
    db: PathLike | None = None, *, config: PathLike | None = None, **settings: Any
) -> duckdb.DuckDBPyConnection:
    """The warehouse as a read-only DuckDB connection (tables and views; a config's view
    settings applied). Read-only, so the hourly extract can still replace the file."""
    _known_settings(connect, settings)
    # lazy: `import etl` loads no DuckDB
    from etl.warehouse.connect import open_warehouse
    from etl.warehouse.settings import ViewSettings, apply_settings

    resolved = resolve(_path(config), {"db": db, **settings})
    con = open_warehouse(resolved.db, read_only=True)
    view_settings = ViewSettings.given_in(resolved)
    if view_settings is not None:
        apply_settings(con, view_settings)
    return con


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def _known_settings(function: Callable[..., Any], settings: Mapping[str, Any]) -> None:
    """A misspelt setting must not fall back to its default: a keyword that is no setting
    is a TypeError naming the closest keyword `function` takes ("dayz": "days")."""
    unknown = [name for name in settings if name not in SETTINGS]
    if not unknown:
        return
    own = [
        p.name for p in inspect.signature(function).parameters.values() if p.kind != p.VAR_KEYWORD
    ]
    close = difflib.get_close_matches(unknown[0], [*own, *SETTINGS], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TypeError(
        f"{function.__name__}() got an unexpected keyword argument {unknown[0]!r}{hint}"
    )
