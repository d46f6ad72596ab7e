"""`runreport views --dialect spark|trino|duckdb`: the views of sql/ for another engine.

Each view file is read as DuckDB SQL by sqlglot and written in the target dialect: there
is no second copy of any view. The statements come in dependency order (a view after the
views it reads; otherwise by name), as `CREATE OR REPLACE TEMPORARY VIEW name AS ...`
(Trino has no temporary views: `CREATE OR REPLACE VIEW` there). With `--parquet DIR` (an
export made by `runreport export`), Spark output starts with one temporary view per
warehouse table over `DIR/<table>`, typed by the export's `_manifest.json`; the
partitioned tables are read through a hidden `<table>__parquet` view so that each table
has exactly the warehouse's columns, in the warehouse's order.

A view must translate with its meaning kept; where sqlglot cannot vouch for that, the
view is refused with the file and the construct named (JobFailed, exit 1):

- a function sqlglot does not know (DuckDB's `isfinite`, say): it would be copied
  verbatim into the other engine, where it may not exist or may mean something else;
- `epoch_ms`, `epoch_us`, `epoch_ns`: DuckDB gives each two opposite meanings by argument
  type (a number of milliseconds to a timestamp; a timestamp to its milliseconds) and
  sqlglot always writes the first. Write `date_diff('millisecond', timestamp
  '1970-01-01', ts)` for the second, `make_timestamp(us)` for the first;
- anything sqlglot reports as unsupported in the target dialect.

Rewrites, each keeping the DuckDB meaning where sqlglot would not:

- `now()` is `current_timestamp` (sqlglot reads DuckDB's `now` as an unknown function).
- spark: DuckDB's exact `quantile_cont(x, p)` (and `percentile_cont(p) within group
  (order by x)`) is Spark's exact `percentile(x, p)`; sqlglot writes `percentile_cont(x,
  p)`, which Spark rejects, or the approximate `percentile_approx`.
- spark: `string_agg(distinct x, sep order by x)` is `array_join(array_sort(collect_set(x)),
  sep)` (NULL when x is always NULL): Spark 4.3 fails with a ClassCastException on the
  `listagg(distinct ...) within group` sqlglot writes when the query has another
  distinct aggregate, such as `count(distinct ...)`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import duckdb
import sqlglot
from sqlglot import TokenType, exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from etl.config import Dialect
from etl.errors import ConfigError, JobFailed
from etl.warehouse.export import read_manifest
from etl.warehouse.views import WIDE_RUN_COLUMNS, WIDE_SOURCES, view_files, wide_columns

DIALECTS: tuple[Dialect, ...] = get_args(Dialect)
NO_TEMP_VIEWS: tuple[Dialect, ...] = ("trino",)
SEPARATOR = ";\n\n"
AMBIGUOUS_EPOCH = ("epoch_ms", "epoch_us", "epoch_ns")
PARQUET_SUFFIX = "__parquet"


@dataclass
class View:
    name: str
    file: str  # as the user knows it: sql/<name>.sql
    text: str
    tree: exp.Query

    def reads(self, views: set[str]) -> set[str]:
        """The other views this one selects from (CTE names are not views)."""
        ctes = {cte.alias for cte in self.tree.find_all(exp.CTE)}
        tables = {table.name for table in self.tree.find_all(exp.Table) if not table.db}
        return (tables & views) - ctes - {self.name}


def view_statements(
    dialect: str, folder: Path | None = None, parquet: Path | None = None
) -> list[str]:
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown dialect {dialect!r}", f"Use one of: {', '.join(DIALECTS)}")
    if parquet is not None and dialect != "spark":
        raise ConfigError(
            f"--parquet registers the export's tables for spark only, not {dialect}",
            "Leave out --parquet, or use --dialect spark",
        )
    statements = parquet_tables(parquet) if parquet is not None else []
    for view in dependency_order(read_views(folder)):
        statements.append(create_view(view, dialect))
    if parquet is not None:  # the search_runs-shaped wide tables, from the export's keys
        statements += [sql for _, sql in spark_wide_statements(wide_keys_of_export(parquet))]
    return statements


def read_views(folder: Path | None = None) -> dict[str, View]:
    views = {}
    for name, path in view_files(folder).items():
        file = f"sql/{path.name}"
        text = path.read_text(encoding="utf-8")
        views[name] = View(name, file, text, parse_view(text, file))
    return views


def parse_view(text: str, file: str) -> exp.Query:
    """The one SELECT of a view file as DuckDB SQL, with the rewrites applied."""
    try:
        trees = [t for t in sqlglot.parse(text, read="duckdb") if t is not None]
    except ParseError as exc:
        raise _refused(file, f"sqlglot cannot read it: {_first_line(exc)}") from exc
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise _refused(file, "it must hold exactly one SELECT")
    return rewrite(trees[0])


def rewrite(tree: exp.Query) -> exp.Query:
    def now_is_current_timestamp(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "now" and not node.expressions:
            return exp.CurrentTimestamp()
        return node

    rewritten = tree.transform(now_is_current_timestamp)
    assert isinstance(rewritten, exp.Query)
    return rewritten


def for_dialect(tree: exp.Query, dialect: str) -> exp.Query:
    if dialect != "spark":
        return tree
    rewritten = tree.transform(_exact_percentile).transform(_distinct_string_agg)
    assert isinstance(rewritten, exp.Query)
    return rewritten


def _exact_percentile(node: exp.Expression) -> exp.Expression:
    """quantile_cont(x, p) and percentile_cont(p) within group (order by x) as Spark's
    percentile(x, p)."""
    if isinstance(node, exp.PercentileCont) and node.expression is not None:
        return exp.Anonymous(this="PERCENTILE", expressions=[node.this, node.expression])
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        order = node.expression
        keys = order.expressions if isinstance(order, exp.Order) else []
        if len(keys) == 1 and not keys[0].args.get("desc"):
            return exp.Anonymous(this="PERCENTILE", expressions=[keys[0].this, node.this.this])
    return node


def _distinct_string_agg(node: exp.Expression) -> exp.Expression:
    """string_agg(distinct x, sep order by x) as Spark's sorted, joined collect_set."""
    order = node.this if isinstance(node, exp.GroupConcat) else None
    if not isinstance(order, exp.Order) or not isinstance(order.this, exp.Distinct):
        return node
    values = order.this.expressions
    keys = order.expressions
    if len(values) != 1 or len(keys) != 1 or keys[0].args.get("desc") or keys[0].this != values[0]:
        return node
    value = values[0]
    separator = node.args.get("separator") or exp.Literal.string(",")
    joined = exp.Anonymous(
        this="ARRAY_JOIN",
        expressions=[
            exp.Anonymous(
                this="ARRAY_SORT",
                expressions=[exp.Anonymous(this="COLLECT_SET", expressions=[value.copy()])],
            ),
            separator.copy(),
        ],
    )
    any_value = exp.GT(this=exp.Count(this=value.copy()), expression=exp.Literal.number(0))
    return exp.Case(ifs=[exp.If(this=any_value, true=joined)])


def check_portable(view: View) -> None:
    """Refuse the constructs sqlglot would translate wrongly (see the module docstring)."""
    unknown = sorted({node.name for node in view.tree.find_all(exp.Anonymous)})
    if unknown:
        raise _refused(
            view.file,
            f"sqlglot does not know the function {', '.join(unknown)} and would copy it "
            "unchanged into the other engine",
            "Write it with standard SQL or a function sqlglot translates",
        )
    ambiguous = called_functions(view.text) & set(AMBIGUOUS_EPOCH)
    if ambiguous:
        raise _refused(
            view.file,
            f"{min(ambiguous)}() is translated as a number-to-timestamp conversion, "
            "also where DuckDB converts a timestamp to a number",
            "For a timestamp's milliseconds write date_diff('millisecond', "
            "timestamp '1970-01-01', ts); for a timestamp from microseconds, make_timestamp(us)",
        )


def called_functions(text: str) -> set[str]:
    """The names, in lower case, written as calls (`name(`) in DuckDB SQL, comments and
    string literals left out."""
    tokens = sqlglot.tokenize(text, read="duckdb")
    return {
        token.text.lower()
        for token, following in itertools.pairwise(tokens)
        if following.token_type == TokenType.L_PAREN and token.token_type == TokenType.VAR
    }


def dependency_order(views: dict[str, View]) -> list[View]:
    """Each view after the views it reads, otherwise by name; a cycle is refused."""
    names = set(views)
    waiting = {name: view.reads(names) for name, view in views.items()}
    ordered: list[View] = []
    while waiting:
        ready = sorted(name for name, reads in waiting.items() if not reads)
        if not ready:
            cycle = ", ".join(sorted(waiting))
            raise JobFailed(
                f"the views {cycle} read each other in a cycle", "Fix the files in sql/"
            )
        for name in ready:
            ordered.append(views[name])
            del waiting[name]
        for reads in waiting.values():
            reads.difference_update(ready)
    return ordered


def create_view(view: View, dialect: str) -> str:
    if dialect != "duckdb":
        check_portable(view)
    statement = exp.Create(
        this=exp.to_table(view.name),
        kind="VIEW",
        replace=True,
        expression=for_dialect(view.tree, dialect),
        properties=None
        if dialect in NO_TEMP_VIEWS
        else exp.Properties(expressions=[exp.TemporaryProperty()]),
    )
    try:
        return statement.sql(dialect, pretty=True, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        reason = f"sqlglot cannot write it for {dialect}: {_first_line(exc)}"
        raise _refused(view.file, reason) from exc


def parquet_tables(folder: Path) -> list[str]:
    """Spark temporary views over the export's tables (see the module docstring)."""
    manifest = read_manifest(folder)
    root = folder.resolve()
    statements = []
    for table, info in sorted(manifest["tables"].items()):
        columns = [(c["name"], spark_type(c["type"])) for c in info["columns"]]
        location = exp.Literal.string(str(root / info["path"])).sql("spark")
        if not info.get("partitioned"):
            statements.append(_parquet_view(table, columns, location))
            continue
        partition = manifest.get("partition_column", "experiment_id")
        read = [*columns, (partition, "STRING")] if partition not in dict(columns) else columns
        hidden = table + PARQUET_SUFFIX
        statements.append(_parquet_view(hidden, read, location))
        selected = ", ".join(_ident(name) for name, _ in columns)
        statements.append(
            f"CREATE OR REPLACE TEMPORARY VIEW {_ident(table)} AS "
            f"SELECT {selected} FROM {_ident(hidden)}"
        )
    return statements


def _parquet_view(name: str, columns: list[tuple[str, str]], location: str) -> str:
    schema = ", ".join(f"{_ident(column)} {kind}" for column, kind in columns)
    return (
        f"CREATE OR REPLACE TEMPORARY VIEW {_ident(name)} ({schema}) "
        f"USING parquet OPTIONS (path {location})"
    )


def spark_type(duckdb_type: str) -> str:
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql("spark")


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("spark")


def _refused(file: str, reason: str, hint: str = "") -> JobFailed:
    return JobFailed(f"view {file} does not translate: {reason}", hint or f"Fix {file}")


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def spark_wide_statements(keys: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(name, Spark SQL) of runs_wide_all and runs_wide over the warehouse tables as Spark
    views (`runreport views --dialect spark --parquet DIR` makes them), with a column per
    key of `keys` (source table -> its keys: `wide_keys_of_export`), named as create_runs_wide
    names them in DuckDB. Spark, like DuckDB, ignores case in column names by default."""
    selects = [f"runs.{name}" for name in WIDE_RUN_COLUMNS]
    joins = []
    for table in WIDE_SOURCES:
        if not keys.get(table):
            continue
        joins.append(
            f"LEFT JOIN (SELECT run_id, MAP_FROM_ENTRIES(COLLECT_LIST(STRUCT(key, value))) "
            f"AS entries FROM {table} GROUP BY run_id) AS {table}_map "
            f"ON {table}_map.run_id = runs.run_id"
        )
        for key, column in wide_columns(table, keys[table]):
            # try_element_at: NULL for a key the run lacks, also under ANSI mode
            selects.append(
                f"TRY_ELEMENT_AT({table}_map.entries, {spark_literal(key)}) "
                f"AS {spark_ident(column)}"
            )
    wide_all = (
        f"CREATE OR REPLACE TEMPORARY VIEW runs_wide_all AS SELECT {', '.join(selects)} "
        f"FROM runs {' '.join(joins)}"
    ).rstrip()
    wide = (
        "CREATE OR REPLACE TEMPORARY VIEW runs_wide AS SELECT * FROM runs_wide_all "
        "WHERE lifecycle_stage = 'active' AND experiment_id IN "
        "(SELECT experiment_id FROM experiments WHERE lifecycle_stage = 'active')"
    )
    return [("runs_wide_all", wide_all), ("runs_wide", wide)]


def wide_keys_of_export(folder: Path) -> dict[str, list[str]]:
    """The distinct keys of the metrics, params and tags tables of a Parquet export (the
    folder `runreport export --parquet` wrote), read with an in-memory DuckDB."""
    con = duckdb.connect()
    try:
        found: dict[str, list[str]] = {}
        for table in WIDE_SOURCES:
            files = sorted((folder / table).rglob("*.parquet"))
            if not files:
                found[table] = []
                continue
            rows = con.execute(
                "select distinct key from read_parquet($files) where key is not null",
                {"files": [str(path) for path in files]},
            ).fetchall()
            found[table] = sorted(key for (key,) in rows)
        return found
    finally:
        con.close()


def named_statements(statements: list[str], dialect: str) -> list[tuple[str, str]]:
    """(view or table name, statement) of each CREATE statement, as `runreport views
    --format json` lists them: no splitting on `;` needed (the views' comments hold `;`)."""
    named = []
    for statement in statements:
        tree = sqlglot.parse_one(statement, read=dialect)
        target = tree.this if isinstance(tree, exp.Create) else None
        table = target.this if isinstance(target, exp.Schema) else target
        if not isinstance(table, exp.Table):
            raise ValueError(f"not a CREATE statement: {statement[:80]}")
        named.append((table.name, statement))
    return named


def spark_literal(text: str) -> str:
    return exp.Literal.string(text).sql("spark")


def spark_ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("spark")
