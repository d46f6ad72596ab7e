"""Create the views of sql/ (one SELECT per file, named after the file) in a warehouse,
and the runs_wide table, which needs a pivot over keys only known at load time."""

from __future__ import annotations

from pathlib import Path

import duckdb

from etl.resources import sql_dir


def view_files(folder: Path | None = None) -> dict[str, Path]:
    folder = folder or sql_dir()
    return {path.stem: path for path in sorted(folder.glob("*.sql"))}


def create_views(con: duckdb.DuckDBPyConnection, folder: Path | None = None) -> list[str]:
    """Create or replace every view; views may select from each other in any file order."""
    pending = {name: path.read_text() for name, path in view_files(folder).items()}
    created: list[str] = []
    while pending:
        errors: dict[str, str] = {}
        for name, body in list(pending.items()):
            try:
                con.execute(f"create or replace view {name} as\n{body.rstrip().rstrip(';')}")
            except duckdb.CatalogException as exc:  # a view it reads is not made yet
                errors[name] = str(exc)
                continue
            created.append(name)
            del pending[name]
        if errors and len(errors) == len(pending):
            name, message = next(iter(errors.items()))
            raise RuntimeError(f"view {name} (sql/{name}.sql) cannot be created: {message}")
    return created
