"""Read a SQL tracking store's tables directly (`runreport extract --via sql`).

Yields the same `Records` as etl.extract.reader does through `search_runs`, with the
values MLflow's SqlAlchemyStore would return (mlflow/store/tracking/sqlalchemy_store.py):

- runs come with their `latest_metrics` rows (what `Run.data._metric_objs` holds): a NaN is
  stored as value 0 with `is_nan` set and read back as NaN; ±inf is stored, and returned,
  as ±1.7976931348623157e308;
- `run_name` is `runs.name`, else (when that is empty) the `mlflow.runName` tag, as
  `SqlRun.to_mlflow_entity` does;
- every experiment and every run, deleted ones included, as `search_experiments` and
  `search_runs` with `ViewType.ALL` list them in a single-tenant store.

Guarded by the schema's shape, not its revision (etl/extract/store_shape.py): any revision
that has the columns read is read, and a store older than an optional part (datasets,
model outputs, ...) is read without it. Everything is read in one read-only transaction
(one snapshot) and nothing is written.
No MLflow import: SQLite goes through the stdlib, PostgreSQL through a SQLAlchemy connection
and the driver's own cursor, MySQL (and MariaDB) through SQLAlchemy's streamed results.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from etl.config import default
from etl.errors import ConfigError, JobFailed
from etl.extract import store_shape
from etl.extract.entities import CONTEXT_TAG
from etl.extract.reader import Records, batched
from etl.extract.tracking import redact, sqlite_path
from etl.schema import DEFAULT_WORKSPACE, EXPERIMENT_TABLES, empty_records

SUPPORTED_SCHEMES = ("sqlite", "postgresql", "mysql")
CHUNK_ROWS = 50_000
# Run ids per batch when reading some runs only (an incremental extract): SQLite and MySQL
# bind them one by one in an `in (...)` list, PostgreSQL as one array (`= any(...)`, one
# index scan per table; 500-id lists cost PostgreSQL 2-3x more per run).
LIST_ID_BATCH = 500
ARRAY_ID_BATCH = 10_000
# PostgreSQL drivers whose cursors take a name (a server-side cursor): their rows are read
# on the driver's own cursor, as SQLAlchemy's result rows cost 3x the read itself (1.7 s
# against 0.5 s for 600,000 rows); other drivers go through SQLAlchemy's streaming.
NAMED_CURSOR_DRIVERS = ("psycopg", "psycopg2")
# the module a URI's driver imports -> the package that installs it
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pymysql": "pymysql",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
}

Row = Sequence[Any]
# Tables a full read takes whole, leaving the rows of runs that do not exist (orphans,
# which search_runs never returns) for the warehouse to delete.
ORPHANS_LEFT = ("params", "tags", "metrics", "metric_history")

_RUNS_SQL = """
select r.run_uuid, r.experiment_id,
       case when (r.name is null or r.name = '') and t.value is not null and t.value <> ''
            then t.value else r.name end,
       r.status, r.user_id, r.start_time, r.end_time, r.lifecycle_stage, r.artifact_uri
from runs r
left join tags t on t.run_uuid = r.run_uuid and t."key" = 'mlflow.runName'
"""
# table -> the select of its warehouse columns, in etl.schema order (`is_nan` comes last),
# with `{runs}` where the condition on its run id column goes. Datasets, inputs and outputs
# as SqlAlchemyStore._get_run_inputs and _get_model_outputs_bulk join them for search_runs.
_RUN_TABLE_SQL = {
    "params": 'select run_uuid, "key", value from params where run_uuid {runs}',
    "tags": 'select run_uuid, "key", value from tags where run_uuid {runs}',
    "metrics": 'select run_uuid, "key", value, step, "timestamp", is_nan from latest_metrics '
    "where run_uuid {runs}",
    "metric_history": 'select run_uuid, "key", value, step, "timestamp", is_nan from metrics '
    "where run_uuid {runs}",
    "datasets": "select distinct d.name, d.digest, d.dataset_source_type, d.dataset_source, "
    "d.dataset_schema, d.dataset_profile from inputs i "
    "join datasets d on d.dataset_uuid = i.source_id "
    "where i.destination_type = 'RUN' and i.destination_id {runs}",
    "run_inputs": "select i.destination_id, d.name, d.digest, t.value from inputs i "
    "join datasets d on d.dataset_uuid = i.source_id "
    f"left join input_tags t on t.input_uuid = i.input_uuid and t.name = '{CONTEXT_TAG}' "
    "where i.destination_type = 'RUN' and i.destination_id {runs}",
    "run_outputs": "select source_id, destination_id, step from inputs "
    "where source_type = 'RUN_OUTPUT' and destination_type = 'MODEL_OUTPUT' "
    "and source_id {runs}",
    # as SqlAlchemyStore._get_model_inputs (get_run's RunInputs.model_inputs)
    "run_model_inputs": "select source_id, destination_id from inputs "
    "where source_type = 'RUN_INPUT' and destination_type = 'MODEL_INPUT' "
    "and source_id {runs}",
}


class _Source(Protocol):
    @property
    def id_batch(self) -> int:
        """Run ids a query when reading some runs only."""
        ...

    def chunks(self, sql: str, params: Mapping[str, Any]) -> Iterator[Sequence[Row]]: ...

    def among(self, run_ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """The condition `<column> {condition}` that holds for these ids, and its params."""
        ...

    def columns(self, table: str) -> set[str]:
        """The table's column names, lower case; empty when there is no such table."""
        ...


def _in_list(run_ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
    names = {f"id{i}": run_id for i, run_id in enumerate(run_ids)}
    return f"in ({', '.join(':' + name for name in names)})", names


@dataclass
class _SqliteSource:
    con: sqlite3.Connection
    id_batch: int = LIST_ID_BATCH

    def chunks(self, sql: str, params: Mapping[str, Any]) -> Iterator[Sequence[Row]]:
        cursor = self.con.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK_ROWS):
            yield rows

    def among(self, run_ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
        return _in_list(run_ids)

    def columns(self, table: str) -> set[str]:
        rows = self.con.execute("select name from pragma_table_info(?)", [table]).fetchall()
        return {str(name).lower() for (name,) in rows}


@dataclass
class _SqlAlchemySource:
    con: Any  # sqlalchemy.engine.Connection
    cursor_numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def id_batch(self) -> int:
        return ARRAY_ID_BATCH if self.con.dialect.name == "postgresql" else LIST_ID_BATCH

    def chunks(self, sql: str, params: Mapping[str, Any]) -> Iterator[Sequence[Row]]:
        # SQLAlchemy only for the database servers: a SQLite store is read without it
        from sqlalchemy import text

        statement = text(sql)
        if self.con.dialect.driver not in NAMED_CURSOR_DRIVERS:
            # SQLAlchemy's server-side cursor: a table streams in chunks, not whole
            options = statement.execution_options(stream_results=True)
            yield from self.con.execute(options, dict(params)).partitions(CHUNK_ROWS)
            return
        compiled = statement.compile(dialect=self.con.dialect)  # the driver's paramstyle
        driver = self.con.connection.dbapi_connection
        cursor = driver.cursor(name=f"runreport_{next(self.cursor_numbers)}")
        try:
            cursor.execute(compiled.string, compiled.construct_params(dict(params)))
            while rows := cursor.fetchmany(CHUNK_ROWS):
                yield rows
        except self.con.dialect.loaded_dbapi.Error as exc:
            raise StoreReadError(str(exc)) from exc
        finally:
            with contextlib.suppress(Exception):  # in a failed transaction, close fails too
                cursor.close()

    def among(self, run_ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
        if self.con.dialect.name != "postgresql":
            return _in_list(run_ids)
        return "= any(:ids)", {"ids": list(run_ids)}  # the drivers bind a list as an array

    def columns(self, table: str) -> set[str]:
        if self.con.dialect.name == "postgresql":
            # the catalog, not information_schema: that one hides the columns of tables
            # the role cannot read, which must fail as "permission denied", not as missing
            sql = (
                "select attname from pg_attribute where attrelid = to_regclass(:t) "
                "and attnum > 0 and not attisdropped"
            )
        else:
            sql = (
                "select column_name from information_schema.columns "
                "where table_schema = database() and table_name = :t"
            )
        return {str(row[0]).lower() for chunk in self.chunks(sql, {"t": table}) for row in chunk}


class StoreReadError(Exception):
    """The database driver failed while a table was read."""


class StoreSnapshot:
    """One read-only transaction on the store: every read sees the same moment."""

    def __init__(self, source: _Source, revision: str, parts: frozenset[str]) -> None:
        self.source = source
        self.revision = revision
        self.parts = parts  # the optional parts of the schema the store has

    def _run_tables(self, metric_history: bool) -> list[str]:
        left_out = {"metric_history"} if not metric_history else set()
        if store_shape.DATASETS not in self.parts:
            left_out |= {"datasets", "run_inputs", "run_outputs", "run_model_inputs"}
        if store_shape.MODEL_OUTPUTS not in self.parts:
            # logged models, and with them model inputs and outputs, came with MLflow 3.0
            left_out |= {"run_outputs", "run_model_inputs"}
        return [table for table in _RUN_TABLE_SQL if table not in left_out]

    @property
    def workspace_of_row(self) -> str:
        """The SQL of a row's MLflow workspace, in a table that has one once the store has
        workspaces (experiments, the registry, evaluation datasets): before, MLflow's
        default one."""
        if store_shape.WORKSPACES in self.parts:
            return f"coalesce(workspace, '{DEFAULT_WORKSPACE}')"
        return f"'{DEFAULT_WORKSPACE}'"

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[Row]:
        for chunk in self.source.chunks(sql, params or {}):
            yield from chunk

    def experiment_records(self) -> Records:
        """experiments and experiment_tags, deleted experiments included."""
        records = empty_records(EXPERIMENT_TABLES, workspace=True)
        experiments = self.source.chunks(
            "select experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
            f"last_update_time, {self.workspace_of_row} from experiments",
            {},
        )
        for chunk in experiments:
            _extend(records["experiments"], chunk, ids=1)
        for chunk in self.source.chunks(
            'select experiment_id, "key", value from experiment_tags', {}
        ):
            _extend(records["experiment_tags"], chunk, ids=1)
        return records

    def run_records(
        self, run_ids: Iterable[str] | None = None, metric_history: bool = False
    ) -> Iterator[tuple[int, Records]]:
        """(runs in batch, records) for every run, or for these runs only.

        Every run: each table is streamed whole, CHUNK_ROWS rows a batch (the count is
        non-zero only for batches of `runs`). Some runs: the source's id_batch runs a batch,
        all tables.
        """
        tables = self._run_tables(metric_history)
        if run_ids is None:
            yield from self._all_runs(tables)
            return
        for batch in batched(sorted(set(run_ids)), self.source.id_batch):
            where, names = self.source.among(batch)
            records = empty_records()
            for chunk in self.source.chunks(f"{_RUNS_SQL} where r.run_uuid {where}", names):
                _extend(records["runs"], chunk, ids=2)
            for table in tables:
                sql = _RUN_TABLE_SQL[table].format(runs=where)
                for chunk in self.source.chunks(sql, names):
                    _extend_run_table(records, table, chunk)
            yield len(records["runs"]["run_id"]), records

    def history_records(self, run_ids: Iterable[str]) -> Iterator[Records]:
        """The metric history of these runs, the source's id_batch runs a batch."""
        for batch in batched(sorted(set(run_ids)), self.source.id_batch):
            where, names = self.source.among(batch)
            records = empty_records()
            sql = _RUN_TABLE_SQL["metric_history"].format(runs=where)
            for chunk in self.source.chunks(sql, names):
                _extend_run_table(records, "metric_history", chunk)
            yield records

    def _all_runs(self, tables: list[str]) -> Iterator[tuple[int, Records]]:
        for chunk in self.source.chunks(_RUNS_SQL, {}):
            records = empty_records()
            _extend(records["runs"], chunk, ids=2)
            yield len(chunk), records
        for table in tables:
            # search_runs reaches these rows through runs, so rows of a run that does not
            # exist are not the warehouse's: the big tables are read whole (a semi-join
            # costs SQLite 1.6 s at 120,000 runs) and ORPHANS_LEFT are deleted in DuckDB
            runs = "is not null" if table in ORPHANS_LEFT else "in (select run_uuid from runs)"
            sql = _RUN_TABLE_SQL[table].format(runs=runs)
            for chunk in self.source.chunks(sql, {}):
                records = empty_records()
                _extend_run_table(records, table, chunk)
                yield 0, records

    def changed_run_ids(
        self, since_ms: int, stored_deleted: set[str], was_running: set[str]
    ) -> list[str]:
        """The runs an incremental extract re-reads (see etl/extract/incremental.py):
        started or ended since `since_ms`, RUNNING now, RUNNING at the last extract
        (`was_running`), deleted or restored since (against `stored_deleted`, the runs the
        warehouse holds as deleted). Runs gone from the store are in the list too: their
        rows are deleted and nothing replaces them."""
        changed = set(was_running)
        deleted_now: set[str] = set()
        rows = self.rows(
            "select run_uuid, lifecycle_stage, "
            "case when start_time >= :since or end_time >= :since or status = 'RUNNING' "
            "then 1 else 0 end from runs "
            "where start_time >= :since or end_time >= :since or status = 'RUNNING' "
            "or lifecycle_stage = 'deleted'",
            {"since": since_ms},
        )
        for run_id, stage, touched in rows:
            if touched:
                changed.add(run_id)
            if stage == "deleted":
                deleted_now.add(run_id)
        changed |= deleted_now ^ stored_deleted
        return sorted(changed)

    def has_listed_entities(self) -> bool:
        """Whether the store holds any logged model, registered model, trace or evaluation
        dataset: when it holds none, their listings are known empty without importing
        MLflow."""
        listed = {
            "logged_models": store_shape.LOGGED_MODELS,
            "registered_models": "the model registry",
            "trace_info": store_shape.TRACES,
            "evaluation_datasets": store_shape.EVALUATION_DATASETS,
        }
        tables = [table for table, part in listed.items() if part in self.parts]
        if not tables:
            return False
        sql = " union all ".join(f"select 1 from {table}" for table in tables)
        return any(True for _ in self.rows(sql + " limit 1"))

    def run_count(self) -> int:
        return int(next(self.rows("select count(*) from runs"))[0])


def _extend(columns: dict[str, list[Any]], chunk: Sequence[Row], ids: int) -> None:
    """Append a chunk of rows to the columns; the first `ids` columns are ids, which the
    store keeps as integers (experiment_id) and the warehouse as text."""
    for i, (name, values) in enumerate(zip(columns, zip(*chunk, strict=True), strict=True)):
        if i < ids and values and not isinstance(values[0], str):
            columns[name].extend(None if v is None else str(v) for v in values)
        else:
            columns[name].extend(values)


def _extend_run_table(records: Records, table: str, chunk: Sequence[Row]) -> None:
    if table not in ("metrics", "metric_history"):
        _extend(records[table], chunk, ids=1)
        return
    nan = math.nan
    rows = [
        (run_id, key, nan if is_nan else value, step, timestamp)
        for run_id, key, value, step, timestamp, is_nan in chunk
    ]
    _extend(records[table], rows, ids=1)


@contextlib.contextmanager
def open_snapshot(
    uri: str, timeout_seconds: int = default("tracking_timeout")
) -> Iterator[StoreSnapshot]:
    """A read-only snapshot of the MLflow SQL store at `uri`, its schema's shape checked.
    Connecting, and each statement or wait for a lock, take at most `timeout_seconds`: a
    database that never answers, or a lock held on `runs` (a migration, VACUUM FULL),
    fails the extract in one line instead of holding it, and every later cron run, forever."""
    scheme = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if scheme not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"--via sql reads SQLite, PostgreSQL and MySQL tracking stores, not {redact(uri)}",
            "Use --via search_runs (the default) for this tracking URI",
        )
    opener = _sqlite_source if scheme == "sqlite" else _sqlalchemy_source
    with _database_errors(uri), opener(uri, timeout_seconds) as source:
        revision = _revision(source, uri)
        parts = store_shape.present_parts(source.columns)
        yield StoreSnapshot(source, revision, parts)


def read_revision(uri: str, timeout_seconds: int = default("tracking_timeout")) -> str:
    """The schema revision of the SQL store at `uri`, read without writing anything
    (ConfigError when the database holds no MLflow store)."""
    scheme = urlsplit(uri).scheme.lower().split("+", 1)[0]
    opener = _sqlite_source if scheme == "sqlite" else _sqlalchemy_source
    with _database_errors(uri), opener(uri, timeout_seconds) as source:
        return _revision(source, uri)


@contextlib.contextmanager
def _sqlite_source(uri: str, timeout_seconds: int) -> Iterator[_Source]:
    path = sqlite_path(uri)
    if path is None:
        raise ConfigError("--via sql cannot read an in-memory SQLite store", "Use a file")
    # mode=ro: this connection cannot write, whatever runs on it
    # one thread at a time reads it, not always the one that opened it (read_ahead)
    con = sqlite3.connect(
        f"file:{quote(str(path.resolve()))}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        timeout=timeout_seconds,  # how long a read waits for a writer's lock
    )
    try:
        con.execute("begin")  # deferred: the snapshot starts at the first read
        yield _SqliteSource(con)
    finally:
        with contextlib.suppress(sqlite3.Error):
            con.execute("rollback")
        con.close()


@contextlib.contextmanager
def _sqlalchemy_source(uri: str, timeout_seconds: int) -> Iterator[_Source]:
    # SQLAlchemy only for the database servers: a SQLite store is read without it
    from sqlalchemy.engine import make_url

    driver = make_url(uri).get_driver_name()
    engine = _engine(uri, _bounded(driver, timeout_seconds))
    try:
        with engine.connect() as con:
            if engine.dialect.name == "mysql":
                # the queries quote identifiers ("key") the standard way; a session setting
                con.exec_driver_sql(
                    "set session sql_mode = concat_ws(',', nullif(@@sql_mode, ''), 'ANSI_QUOTES')"
                )
                con.exec_driver_sql(f"set session lock_wait_timeout = {int(timeout_seconds)}")
            if engine.dialect.name in ("postgresql", "mysql"):
                # other dialects (mssql, whose revision alone is read) spell it otherwise
                con.exec_driver_sql("set transaction isolation level repeatable read, read only")
            try:
                yield _SqlAlchemySource(con)
            finally:
                con.rollback()
    finally:
        engine.dispose()


def _engine(uri: str, connect_args: dict[str, Any]) -> Any:
    """A SQLAlchemy engine of one connection at a time; a driver that is not installed is
    a ConfigError naming it and the package to install."""
    # SQLAlchemy only for the database servers: a SQLite store is read without it
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    try:
        return create_engine(uri, poolclass=NullPool, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        module = (exc.name or "the driver").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise ConfigError(
            f"the database driver {module} for {redact(uri)} is not installed",
            f"Install it into runreport's environment: pip install {package}",
        ) from None


def _bounded(driver: str, seconds: int) -> dict[str, Any]:
    """The driver's own connect arguments that bound connecting, each statement and each
    wait for a lock (PostgreSQL's through libpq options: a session setting would start
    the transaction before its read-only mode is set)."""
    seconds = max(1, int(seconds))
    if driver in ("psycopg", "psycopg2"):
        ms = seconds * 1000
        options = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        return {"connect_timeout": seconds, "options": options}
    if driver in ("pymysql", "mysqldb"):
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}
    return {}


def _revision(source: _Source, uri: str) -> str:
    """The store's alembic revision; ConfigError when it has none (not an MLflow store),
    JobFailed naming what the database said when it cannot be read."""
    if "version_num" not in source.columns("alembic_version"):
        raise ConfigError(
            f"{redact(uri)} has no alembic_version table: not an MLflow tracking store",
            "Check the tracking URI",
        )
    found = [
        row[0]
        for chunk in source.chunks("select version_num from alembic_version", {})
        for row in chunk
    ]
    return found[0] if len(found) == 1 else ", ".join(found) or "none"


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error | StoreReadError):
        return True
    try:  # SQLAlchemy only when a server store is read (see _sqlalchemy_source)
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        return False
    return isinstance(exc, SQLAlchemyError)


@contextlib.contextmanager
def _database_errors(uri: str) -> Iterator[None]:
    """The driver's errors as one-line job failures naming the store."""
    try:
        yield
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise JobFailed(
            f"reading the tracking store {redact(uri)} failed: {first[:300]}",
            "The previous warehouse is unchanged; check the database (or raise "
            "tracking.timeout_seconds if it is busy) and try again",
        ) from exc
