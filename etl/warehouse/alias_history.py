"""model_alias_history: MLflow keeps only where each alias points now, so every extract
compares the aliases it read (model_aliases, and prompt_aliases as kind 'prompt') with the
last state the history holds and adds a row for each alias that points somewhere new,
appeared, or vanished (version NULL). The history starts with the first extract and is
kept across full rebuilds; rows from before prompts were read are the models' (kind
'model')."""

from __future__ import annotations

from datetime import datetime

import duckdb

from etl.warehouse.connect import quote_ident, quote_literal, table_names

# Where each alias pointed at the latest observation; a vanished alias has version NULL.
_LAST_SEEN = """
select kind, name, alias, version from (
    select *, row_number() over (partition by kind, name, alias order by observed_at desc) as n
    from model_alias_history
) where n = 1
"""
# Where each alias points now, models' and prompts' (their names share the registry)
_NOW = """
select 'model' as kind, name, alias, version from model_aliases
union all
select 'prompt' as kind, name, alias, version from prompt_aliases
"""


def record_moves(con: duckdb.DuckDBPyConnection, observed_at: datetime) -> int:
    """Add this extract's observations; returns how many rows were added."""
    _add_kind(con)
    before = _count(con)
    con.execute(
        f"""
        insert into model_alias_history (observed_at, name, alias, version, kind)
        with last_seen as ({_LAST_SEEN}), now as ({_NOW})
        select ?::timestamptz, now.name, now.alias, now.version, now.kind
        from now
        left join last_seen using (kind, name, alias)
        where last_seen.version is distinct from now.version
        union all
        select ?::timestamptz, last_seen.name, last_seen.alias, null, last_seen.kind
        from last_seen
        where last_seen.version is not null
          and not exists (
              select 1 from now
              where now.kind = last_seen.kind
                and now.name = last_seen.name
                and now.alias = last_seen.alias
          )
        """,
        [observed_at, observed_at],
    )
    return _count(con) - before


def copy_history(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The rows of `database`.model_alias_history, when it has one (one written before
    prompts were read has no kind: its rows are models')."""
    if "model_alias_history" not in table_names(con, database):
        return
    source = f"{quote_ident(database)}.main.model_alias_history"
    found = con.execute(f"select name from pragma_table_info({quote_literal(source)})")
    columns = {row[0] for row in found.fetchall()}
    kind = "coalesce(kind, 'model')" if "kind" in columns else "'model'"
    con.execute(
        "insert into model_alias_history (observed_at, name, alias, version, kind) "
        f"select observed_at, name, alias, version, {kind} from {source}"
    )


def _add_kind(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse kept from before prompts were read gains the kind column."""
    con.execute("alter table model_alias_history add column if not exists kind varchar")
    con.execute("update model_alias_history set kind = 'model' where kind is null")


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("select count(*) from model_alias_history").fetchone()
    return int(row[0]) if row else 0
