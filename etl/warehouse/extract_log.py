"""The warehouse's own bookkeeping: extract_log rows (by column name, so a warehouse of an
older schema version still reads and copies), runreport_meta, what the next extract needs
to know about the previous warehouse, failed extracts waiting beside it, and the streak of
failed extracts the on_failure recipients were told about."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from etl.errors import JobFailed
from etl.schema import EXTRACT_LOG_COLUMNS, META_DDL, META_TABLE, SCHEMA_VERSION, SOURCE_COLUMN
from etl.warehouse.atomic import write_file
from etl.warehouse.connect import open_warehouse, quote_ident, table_names


@dataclass
class PreviousWarehouse:
    """What the extract reads from the warehouse it is about to replace."""

    schema_version: int | None
    last_start: datetime | None  # of the last successful extract
    last_full_start: datetime | None  # of the last successful full extract
    runs: int
    deleted_ids: set[str] = field(default_factory=set)
    running_ids: set[str] = field(default_factory=set)
    combined_sources: list[str] = field(default_factory=list)  # [[sources]] it combines


def read_previous(db: Path) -> PreviousWarehouse | None:
    """Everything the extract needs of the warehouse it replaces, in one read: None when
    there is no warehouse yet; ConfigError when `db` is not one."""
    if not db.exists():
        return None
    con = open_warehouse(db)
    try:
        return PreviousWarehouse(
            schema_version=schema_version(con),
            last_start=_last_start(con, None),
            last_full_start=_last_start(con, "full"),
            runs=_count(con, "select count(*) from runs"),
            deleted_ids=_ids(con, "select run_id from runs where lifecycle_stage = 'deleted'"),
            running_ids=_ids(con, "select run_id from runs where status = 'RUNNING'"),
            combined_sources=_source_names(con),
        )
    finally:
        con.close()


def _source_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The sources a combined warehouse holds; [] for a warehouse of one store."""
    columns = con.execute(
        "select column_name from duckdb_columns() where schema_name = 'main' "
        "and table_name = 'runs' and database_name = current_database()"
    ).fetchall()
    if (SOURCE_COLUMN,) not in columns:
        return []
    rows = con.execute(f"select distinct {SOURCE_COLUMN} from runs order by 1").fetchall()
    return [str(name) for (name,) in rows]


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    if META_TABLE not in table_names(con):
        return None
    row = con.execute(f"select value from {META_TABLE} where key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else None
    except ValueError:
        return None


# runreport_meta key of each warning line of the extract that wrote the warehouse (what it
# left out, e.g. a file store's unreadable folders): the report lists them
NOTICE_KEY = "extract_notice"


def write_meta(con: duckdb.DuckDBPyConnection, notices: Sequence[str] = ()) -> None:
    con.execute(META_DDL)
    con.execute(f"insert into {META_TABLE} values ('schema_version', ?)", [str(SCHEMA_VERSION)])
    for line in notices:
        con.execute(f"insert into {META_TABLE} values (?, ?)", [NOTICE_KEY, line])


def copy_extract_log(con: duckdb.DuckDBPyConnection, database: str) -> None:
    """The rows of `database`.extract_log, by the columns both tables have."""
    if "extract_log" not in table_names(con, database):
        return
    theirs = {
        name
        for (name,) in con.execute(
            "select column_name from duckdb_columns() where database_name = ? "
            "and schema_name = 'main' and table_name = 'extract_log'",
            [database],
        ).fetchall()
    }
    shared = ", ".join(quote_ident(c) for c in EXTRACT_LOG_COLUMNS if c in theirs)
    con.execute(
        f"insert into extract_log ({shared}) select {shared} "
        f"from {quote_ident(database)}.main.extract_log"
    )


def next_extract_id(con: duckdb.DuckDBPyConnection) -> int:
    return _count(con, "select coalesce(max(extract_id), 0) + 1 from extract_log")


def latest_run_start(con: duckdb.DuckDBPyConnection) -> datetime | None:
    row = con.execute("select max(start_time) from runs").fetchone()
    return row[0] if row else None


def insert_row(con: duckdb.DuckDBPyConnection, **values: Any) -> None:
    """One extract_log row; columns not given are NULL."""
    unknown = set(values) - set(EXTRACT_LOG_COLUMNS)
    assert not unknown, f"not extract_log columns: {unknown}"
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    con.execute(f"insert into extract_log ({names}) values ({marks})", list(values.values()))


def _last_start(con: duckdb.DuckDBPyConnection, mode: str | None) -> datetime | None:
    if "extract_log" not in table_names(con):
        return None
    row = con.execute(
        "select max(started_at) from extract_log where status = 'ok' "
        "and (?::varchar is null or mode = ?)",
        [mode, mode],
    ).fetchone()
    return row[0] if row else None


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def _ids(con: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    return {run_id for (run_id,) in con.execute(query).fetchall()}


def failure_log(db: Path) -> Path:
    """Failed extracts wait here, beside the untouched warehouse, for the next success."""
    return db.with_name(db.name + ".failed-extracts.jsonl")


@contextlib.contextmanager
def failures_kept(db: Path, started: datetime, mode: str, redacted_uri: str) -> Iterator[None]:
    """A failed extract leaves the warehouse as it was; its extract_log row waits in the
    failure log until the next extract that succeeds writes it (record_extract)."""
    try:
        yield
    except JobFailed as exc:
        row = {
            "started_at": started.isoformat(),
            "ended_at": datetime.now(timezone.utc).isoformat(),
            "mode": mode,
            "tracking_uri": redacted_uri,
            "error": exc.one_line(),
        }
        with contextlib.suppress(OSError), failure_log(db).open("a") as pending:
            pending.write(json.dumps(row) + "\n")
        raise


def record_extract(con: duckdb.DuckDBPyConnection, db: Path, **values: Any) -> None:
    """The extract_log rows of a successful extract into `db`: the failed extracts waiting
    in its failure log first, then this one (`values`: its columns)."""
    next_id = next_extract_id(con)
    with contextlib.suppress(FileNotFoundError):
        for line in failure_log(db).read_text().splitlines():
            insert_row(con, extract_id=next_id, status="failed", **json.loads(line))
            next_id += 1
    insert_row(con, extract_id=next_id, status="ok", **values)


@dataclass
class FailureStreak:
    """Extracts failing one after another, and whether on_failure has heard of it: kept
    beside the warehouse (streak_file) so the hourly cron processes share it. The failed
    extracts themselves wait in the failure log; this file outlives a success long enough
    for the "recovered" notice to say what ended."""

    started_at: datetime  # the first failure of the streak
    failed_at: datetime  # the newest
    failures: int
    error: str  # the newest failure, one redacted line
    notified_at: datetime | None = None  # when on_failure was told; None: not yet

    def to_json(self) -> str:
        return json.dumps(
            {
                "started_at": self.started_at.isoformat(),
                "failed_at": self.failed_at.isoformat(),
                "failures": self.failures,
                "error": self.error,
                "notified_at": self.notified_at.isoformat() if self.notified_at else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> FailureStreak:
        data = json.loads(text)
        notified = data.get("notified_at")
        return cls(
            started_at=datetime.fromisoformat(data["started_at"]),
            failed_at=datetime.fromisoformat(data["failed_at"]),
            failures=int(data["failures"]),
            error=str(data["error"]),
            notified_at=datetime.fromisoformat(notified) if notified else None,
        )


def streak_file(db: Path) -> Path:
    return db.with_name(db.name + ".failure-streak.json")


def read_streak(db: Path) -> FailureStreak | None:
    """The failure streak in progress, or None. A file cut short or garbled by hand counts
    as a streak already notified: one notice too few beats one an hour."""
    try:
        text = streak_file(db).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return FailureStreak.from_json(text)
    except (ValueError, KeyError, TypeError):
        now = datetime.now(timezone.utc)
        return FailureStreak(now, now, 1, "unknown (the streak file was unreadable)", now)


def write_streak(db: Path, streak: FailureStreak) -> None:
    write_file(streak_file(db), (streak.to_json() + "\n").encode("utf-8"))


def end_streak(db: Path) -> FailureStreak | None:
    """Remove the streak file; returns the streak it held, if any."""
    streak = read_streak(db)
    streak_file(db).unlink(missing_ok=True)
    return streak
