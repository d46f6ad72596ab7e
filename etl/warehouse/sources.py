"""Several tracking stores in one warehouse (`[[sources]]` in the config).

Each source is extracted into a warehouse of its own, `runs.sources/<name>.duckdb` beside
`runs.duckdb`, with its own incremental state, lock and history. `combine_sources` then
builds the warehouse people query, and swaps it in as an extract does:

- every table of the sources' warehouses, in `main`, with a `tracking_source` column in
  front (the source's name; not `source`, which datasets and model_versions have from
  MLflow); ids stay as each store gave them, unique per source;
- a schema per source holding its views, bound to that source's rows only (a view of
  `main.<table> where source = ...` for each table): a view means what it means on one
  store, and nothing joins runs of one store to experiments of another;
- in `main`, one view per view: every source's rows, with `tracking_source` in front.

So `select * from leaderboard where tracking_source = 'a'` equals the leaderboard of a's own
warehouse. The settings tables (time zone, metric directions, ...) are one copy in `main`,
read by every source's views, and the report's render-time settings shadow them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from etl.schema import META_TABLE, SOURCE_COLUMN
from etl.warehouse.build import WarehouseBuilder, copy_alert_tables, is_settings_table
from etl.warehouse.connect import quote_ident, quote_literal, table_names

# not "source": datasets and model_versions have a column of that name from MLflow


@dataclass(frozen=True)
class SourceWarehouse:
    name: str
    path: Path


def source_warehouse(db: Path, name: str) -> Path:
    """Where one source's own warehouse lives: beside the combined one."""
    return db.with_name(f"{db.stem}.sources") / f"{name}.duckdb"


def combine_sources(db: Path, sources: Sequence[SourceWarehouse]) -> None:
    """Build the combined warehouse `db` from the sources' warehouses (see the module)."""
    with WarehouseBuilder(db, tables=False) as wh:
        con = wh.connection
        aliases = {}
        for number, source in enumerate(sources):
            aliases[source.name] = f"source_{number}"
            con.execute(
                f"attach {quote_literal(str(source.path))} as {aliases[source.name]} (read_only)"
            )
        try:
            _copy_tables(con, aliases)
            _create_source_views(con, aliases)
            if db.exists():  # the alerts were evaluated on the combined warehouse
                con.execute(f"attach {quote_literal(str(db))} as previous (read_only)")
                try:
                    copy_alert_tables(con, "previous")
                finally:
                    con.execute("detach previous")
        finally:
            for alias in aliases.values():
                con.execute(f"detach {alias}")
        wh.commit()


def _copy_tables(con: duckdb.DuckDBPyConnection, aliases: dict[str, str]) -> None:
    holders: dict[str, list[str]] = {}
    for name, alias in aliases.items():
        for table in sorted(table_names(con, alias)):
            holders.setdefault(table, []).append(name)
    first = next(iter(aliases))
    for table, names in sorted(holders.items()):
        if table == META_TABLE:
            continue  # the builder writes the combined warehouse's own
        target = quote_ident(table)
        if is_settings_table(table):  # one configuration: the same in every source
            con.execute(f"create table {target} as select * from {aliases[first]}.main.{target}")
            continue
        parts = [
            f"select {quote_literal(name)} as {SOURCE_COLUMN}, * from {aliases[name]}.main.{target}"
            for name in names
        ]
        # by name: runs_wide has a column per param and metric, which differ by source
        con.execute(f"create table {target} as {' union all by name '.join(parts)}")


def _create_source_views(con: duckdb.DuckDBPyConnection, aliases: dict[str, str]) -> None:
    (catalog,) = con.execute("select current_database()").fetchone() or ("",)
    tables = sorted(t for t in table_names(con) if not _shared(t))
    view_names: dict[str, list[str]] = {}
    for name, alias in aliases.items():
        schema = f"{quote_ident(catalog)}.{quote_ident(name)}"
        con.execute(f"create schema {schema}")
        for table in tables:
            con.execute(
                f"create view {schema}.{quote_ident(table)} as select * exclude ({SOURCE_COLUMN}) "
                f"from main.{quote_ident(table)} where {SOURCE_COLUMN} = {quote_literal(name)}"
            )
        views = _view_sql(con, alias)
        con.execute(f"use {schema}")  # unqualified names in a view bind in its schema
        try:
            _create_in_order(con, views)
        finally:
            con.execute(f"use {quote_ident(catalog)}.main")
        for view in views:
            view_names.setdefault(view, []).append(name)
    for view, names in sorted(view_names.items()):
        parts = [
            f"select {quote_literal(name)} as {SOURCE_COLUMN}, * "
            f"from {quote_ident(name)}.{quote_ident(view)}"
            for name in names
        ]
        con.execute(f"create view main.{quote_ident(view)} as {' union all by name '.join(parts)}")


def _shared(table: str) -> bool:
    return table == META_TABLE or is_settings_table(table)


def _view_sql(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, str]:
    rows = con.execute(
        "select view_name, sql from duckdb_views() "
        "where database_name = ? and schema_name = 'main' and not internal",
        [alias],
    ).fetchall()
    return {name: sql for name, sql in rows}


def _create_in_order(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """A view may select from another: retry those whose inputs are not made yet."""
    pending = dict(views)
    while pending:
        failed: dict[str, str] = {}
        for name, sql in pending.items():
            try:
                con.execute(sql)
            except duckdb.CatalogException as exc:
                failed[name] = str(exc)
        if len(failed) == len(pending):
            name, error = next(iter(failed.items()))
            raise duckdb.CatalogException(f"view {name} of a source: {error}")
        pending = {name: views[name] for name in failed}
