"""The warehouse's record of alerts: what was found, sent, is pending or failed, per
channel (`alerts`), and what each rule saw at its last evaluation (`alert_rule_state`:
its baseline time and, for new_best and best_removed, the leaderboard). Both are kept
across full rebuilds (etl/warehouse/build.py copies them, ALERT_TABLES), like extract_log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from etl.alerts.model import Alert
from etl.warehouse.connect import table_names

ALERTS_DDL = """
create table if not exists alerts (
    alert_key varchar,
    rule varchar,
    kind varchar,
    experiment_id varchar,
    run_id varchar,
    fired_at timestamptz,
    channel varchar,
    delivered_at timestamptz,
    attempts integer,
    status varchar,
    summary varchar,
    last_error varchar,
    details varchar
)
"""
ALERTS_COLUMNS = (
    "alert_key", "rule", "kind", "experiment_id", "run_id", "fired_at", "channel",
    "delivered_at", "attempts", "status", "summary", "last_error", "details",
)  # fmt: skip
RULE_STATE_DDL = """
create table if not exists alert_rule_state (
    rule varchar,
    kind varchar,
    baseline_at timestamptz,
    evaluated_at timestamptz,
    state varchar
)
"""
RULE_STATE_COLUMNS = ("rule", "kind", "baseline_at", "evaluated_at", "state")

PENDING, SENT, FAILED = "pending", "sent", "failed"


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(ALERTS_DDL)
    con.execute(RULE_STATE_DDL)


@dataclass
class RuleState:
    baseline_at: datetime
    evaluated_at: datetime
    state: dict[str, Any]


def read_rule_state(con: duckdb.DuckDBPyConnection, rule: str, kind: str) -> RuleState | None:
    """None: the rule was never evaluated on this warehouse (this evaluation is its
    baseline)."""
    if "alert_rule_state" not in table_names(con):
        return None
    row = con.execute(
        "select baseline_at, evaluated_at, state from alert_rule_state where rule = ? and kind = ?",
        [rule, kind],
    ).fetchone()
    if row is None:
        return None
    return RuleState(row[0], row[1], json.loads(row[2]) if row[2] else {})


def write_rule_state(
    con: duckdb.DuckDBPyConnection, rule: str, kind: str, state: RuleState
) -> None:
    con.execute("delete from alert_rule_state where rule = ? and kind = ?", [rule, kind])
    con.execute(
        "insert into alert_rule_state values (?, ?, ?, ?, ?)",
        [rule, kind, state.baseline_at, state.evaluated_at, json.dumps(state.state)],
    )


def known(con: duckdb.DuckDBPyConnection, key: str, channel: str) -> bool:
    if "alerts" not in table_names(con):  # a dry run on a warehouse never alerted from
        return False
    row = con.execute(
        "select count(*) from alerts where alert_key = ? and channel = ?", [key, channel]
    ).fetchone()
    return bool(row and row[0])


def fired_since(con: duckdb.DuckDBPyConnection, key_prefix: str, since: datetime) -> bool:
    """An alert whose key starts with `key_prefix` fired after `since` (a window rule
    fires once per episode, not once an hour while it lasts)."""
    if "alerts" not in table_names(con):
        return False
    row = con.execute(
        "select count(*) from alerts where starts_with(alert_key, ?) and fired_at > ?",
        [key_prefix, since],
    ).fetchone()
    return bool(row and row[0])


def add_pending(con: duckdb.DuckDBPyConnection, alert: Alert, channel: str) -> None:
    con.execute(
        "insert into alerts values (?, ?, ?, ?, ?, ?, ?, null, 0, ?, ?, null, ?)",
        [
            alert.key,
            alert.rule,
            alert.kind,
            alert.experiment_id,
            alert.run_id,
            alert.fired_at,
            channel,
            PENDING,
            alert.summary,
            alert.to_json(),
        ],
    )


@dataclass
class Delivery:
    alert: Alert
    channel: str
    attempts: int


def pending(con: duckdb.DuckDBPyConnection) -> list[Delivery]:
    """Every delivery still to make, oldest first."""
    rows = con.execute(
        "select details, channel, attempts from alerts where status = ? "
        "order by fired_at, alert_key, channel",
        [PENDING],
    ).fetchall()
    return [
        Delivery(Alert.from_json(details), channel, attempts) for details, channel, attempts in rows
    ]


def record_attempt(
    con: duckdb.DuckDBPyConnection,
    delivery: Delivery,
    *,
    delivered_at: datetime | None,
    error: str | None,
    max_attempts: int,
) -> str:
    """The outcome of one attempt; returns the delivery's new status."""
    attempts = delivery.attempts + 1
    failed = FAILED if attempts >= max_attempts else PENDING
    status = SENT if delivered_at is not None else failed
    con.execute(
        "update alerts set attempts = ?, status = ?, delivered_at = ?, last_error = ? "
        "where alert_key = ? and channel = ?",
        [attempts, status, delivered_at, error, delivery.alert.key, delivery.channel],
    )
    return status


def count_pending(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("select count(*) from alerts where status = ?", [PENDING]).fetchone()
    return int(row[0]) if row else 0


def failed_since(con: duckdb.DuckDBPyConnection, since: datetime | None) -> int:
    """Deliveries marked failed for alerts fired after `since` (all, for None): what the
    next report counts."""
    if "alerts" not in table_names(con):
        return 0
    row = con.execute(
        "select count(*) from alerts where status = ? and (?::timestamptz is null or fired_at > ?)",
        [FAILED, since, since],
    ).fetchone()
    return int(row[0]) if row else 0


def add_extract_warnings(con: duckdb.DuckDBPyConnection, warnings: int) -> None:
    """Count the alerts' warnings in the newest extract_log row (the extract they followed)."""
    if not warnings or "extract_log" not in table_names(con):
        return
    con.execute(
        "update extract_log set warnings = coalesce(warnings, 0) + ? "
        "where extract_id = (select max(extract_id) from extract_log)",
        [warnings],
    )
