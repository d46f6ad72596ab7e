"""model_alias_history: MLflow keeps only where each alias points now, so every extract
compares the aliases it read (model_aliases) with the last state the history holds and
adds a row for each alias that points somewhere new, appeared, or vanished (version NULL).
The history starts with the first extract and is kept across full rebuilds."""

from __future__ import annotations

from datetime import datetime

import duckdb

from etl.warehouse.connect import quote_ident, table_names

# Where each alias pointed at the latest observation; a vanished alias has version NULL.
_LAST_SEEN = """
select name, alias, version from (
    select *, row_number() over (partition by name, alias order by observed_at desc) as n
    from model_alias_history
) where n = 1
"""


def record_moves(con: duckdb.DuckDBPyConnection, observed_at: datetime) -> int:
    """Add this extract's observations; returns how many rows were added."""
    before = _count(con)
    con.execute(
        f"""
        insert into model_alias_history
        with last_seen as ({_LAST_SEEN})
        select ?::timestamptz, now.name, now.alias, now.version
        from model_aliases as now
        left join last_seen using (name, alias)
        where last_seen.version is distinct from now.version
        union all
        select ?::timestamptz, last_seen.name, last_seen.alias, null
        from last_seen
        where last_seen.version is not null
          and not exists (
              select 1 from model_aliases as now
              where now.name = last_seen.name and now.alias = last_seen.alias
          )
        """,
        [observed_at, observed_at],
    )
    return _count(con) - before


def copy_history(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The rows of `database`.model_alias_history, when it has one."""
    if "model_alias_history" not in table_names(con, database):
        return
    con.execute(
        "insert into model_alias_history (observed_at, name, alias, version) "
        "select observed_at, name, alias, version "
        f"from {quote_ident(database)}.main.model_alias_history"
    )


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("select count(*) from model_alias_history").fetchone()
    return int(row[0]) if row else 0
