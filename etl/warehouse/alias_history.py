"""model_alias_history: MLflow keeps only where each alias points now, so every extract
compares the aliases it read (model_aliases, and prompt_aliases as kind 'prompt') with the
last state the history holds and adds a row for each alias that points somewhere new,
appeared, or vanished (version NULL). The history starts with the first extract and is
kept across full rebuilds; rows from before prompts were read are the models' (kind
'model'), and rows from before workspaces were read are the default workspace's (names
repeat across workspaces, so an alias is its kind, workspace, name and alias)."""

from __future__ import annotations

from datetime import datetime

import duckdb

from etl.schema import DEFAULT_WORKSPACE
from etl.warehouse.connect import quote_ident, quote_literal, table_names

# Where each alias pointed at the latest observation; a vanished alias has version NULL.
_LAST_SEEN = """
select kind, workspace, name, alias, version from (
    select
        *,
        row_number() over (partition by kind, workspace, name, alias order by observed_at desc)
            as n
    from model_alias_history
) where n = 1
"""
# Where each alias points now, models' and prompts' (their names share the registry)
_NOW = """
select 'model' as kind, workspace, name, alias, version from model_aliases
union all
select 'prompt' as kind, workspace, name, alias, version from prompt_aliases
"""


def record_moves(con: duckdb.DuckDBPyConnection, observed_at: datetime) -> int:
    """Add this extract's observations; returns how many rows were added."""
    _add_missing_columns(con)
    before = _count(con)
    con.execute(
        f"""
        insert into model_alias_history (observed_at, name, alias, version, kind, workspace)
        with last_seen as ({_LAST_SEEN}), now as ({_NOW})
        select ?::timestamptz, now.name, now.alias, now.version, now.kind, now.workspace
        from now
        left join last_seen using (kind, workspace, name, alias)
        where last_seen.version is distinct from now.version
        union all
        select
            ?::timestamptz,
            last_seen.name,
            last_seen.alias,
            null,
            last_seen.kind,
            last_seen.workspace
        from last_seen
        where last_seen.version is not null
          and not exists (
              select 1 from now
              where now.kind = last_seen.kind
                and now.workspace = last_seen.workspace
                and now.name = last_seen.name
                and now.alias = last_seen.alias
          )
        """,
        [observed_at, observed_at],
    )
    return _count(con) - before


def copy_history(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The rows of `database`.model_alias_history, when it has one (one written before
    prompts were read has no kind: its rows are models'; one written before workspaces
    were read has no workspace: its rows are the default workspace's)."""
    if "model_alias_history" not in table_names(con, database):
        return
    source = f"{quote_ident(database)}.main.model_alias_history"
    found = con.execute(f"select name from pragma_table_info({quote_literal(source)})")
    columns = {row[0] for row in found.fetchall()}
    kind = "coalesce(kind, 'model')" if "kind" in columns else "'model'"
    default = quote_literal(DEFAULT_WORKSPACE)
    workspace = f"coalesce(workspace, {default})" if "workspace" in columns else default
    con.execute(
        "insert into model_alias_history (observed_at, name, alias, version, kind, workspace) "
        f"select observed_at, name, alias, version, {kind}, {workspace} from {source}"
    )


def _add_missing_columns(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse kept from before prompts (workspaces) were read gains the kind
    (workspace) column."""
    con.execute("alter table model_alias_history add column if not exists kind varchar")
    con.execute("update model_alias_history set kind = 'model' where kind is null")
    con.execute("alter table model_alias_history add column if not exists workspace varchar")
    con.execute(
        "update model_alias_history set workspace = ? where workspace is null",
        [DEFAULT_WORKSPACE],
    )


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("select count(*) from model_alias_history").fetchone()
    return int(row[0]) if row else 0
