"""Metric history, read the fastest faithful way each store offers.

- SQL stores (sqlite, postgresql, mysql, mssql): one batched read of MLflow's own `metrics`
  table through the store's SQLAlchemy session and model (`SqlMetric`), a batch of runs
  at a time, NaN restored from `is_nan` as `SqlMetric.to_mlflow_entity` does.
- A tracking server (http/https): the bulk endpoint, up to 100 run ids and one key a
  call, with MLflow's own request helper and credentials (`http_request`, the store's
  `MlflowHostCreds`). An answer can hold at most 25,000 points and has no next page, so an
  answer of exactly that many may be cut: its runs not surely complete are read again.
- A file store (`./mlruns`, `file:` URIs): its `metrics/<key>` files, read directly
  (etl/extract/file_history.py): MLflow's reader answers "Run not found" for every run of
  a store kept in git, and costs a listing of the store per run and key.
- Anything else: `get_metric_history` per run and key.

Whatever a batched read cannot do falls back to the per-run-per-key loop
(`reader.metric_history_records`). A run whose history could not be (wholly) read is one
warning line (`reader.skipped_line`); `SkippedHistories` sums those lines up by cause, so
the extract logs a line per cause, not one per run and key.
Records come back a batch at a time, so memory holds one batch of history, not a page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.extract import file_history, reader
from etl.schema import empty_records

if TYPE_CHECKING:
    from mlflow import MlflowClient

Records = reader.Records
RunKeys = list[tuple[str, list[str]]]  # (run_id, the metric keys it has)

BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_RUN_IDS = 100  # the server rejects more
BULK_MAX_POINTS = 25_000  # the server answers at most this many, without a next page
# Runs per batched SQL read: one IN list of this many ids, well under every database's
# limit on bound parameters; with 500 points a run that is 50,000 rows held at a time.
SQL_RUN_BATCH = 100
# Runs per chunk read from a file store's files: 25 runs of 5 keys of 1,000 points each are
# 125,000 points held at a time.
FILE_RUN_BATCH = 25
# Causes of unread metric history logged on a line each; the rest share one line.
CAUSES_SHOWN = 3
# metric_history's table comment after an extract that asked for history
HISTORY_NOTE = "every point of the runs the last extract read; could not be read for {runs} runs"


def history_chunks(client: MlflowClient, runs: RunKeys, warnings: list[str]) -> Iterator[Records]:
    """Every logged point of each run's keys, as records a batch at a time."""
    runs = [(run_id, keys) for run_id, keys in runs if keys]
    if not runs:
        return
    root = _file_store_root(client)
    if root is not None:
        folders = file_history.run_folders(root, {run_id for run_id, _ in runs})
        for batch in _run_batches(runs, FILE_RUN_BATCH):
            yield file_history.read_history(folders, batch, warnings)
        return
    read = _batched_reader(client)
    if read is None:
        for run_id, keys in runs:
            yield reader.metric_history_records(client, run_id, keys, warnings)
        return
    for batch in _run_batches(runs, SQL_RUN_BATCH):
        try:
            with reader._quiet("mlflow.store.db.utils"):
                records = read(batch)
        except Exception:  # the batch again run by run and key: one bad run is one warning
            for run_id, keys in batch:
                yield reader.metric_history_records(client, run_id, keys, warnings)
            continue
        yield records


def _run_batches(runs: RunKeys, size: int) -> Iterator[RunKeys]:
    for start in range(0, len(runs), size):
        yield runs[start : start + size]


def _file_store_root(client: MlflowClient) -> Path | None:
    """The root folder of a file store; None for any other store."""
    store: Any = client._tracking_client.store
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.store.tracking.file_store import FileStore

    return Path(store.root_directory) if isinstance(store, FileStore) else None


def _batched_reader(client: MlflowClient) -> Callable[[RunKeys], Records] | None:
    store: Any = client._tracking_client.store
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if isinstance(store, SqlAlchemyStore):
        return lambda batch: _sql_read(store, batch)
    if isinstance(store, RestStore):
        return lambda batch: _http_read(client, store, batch)
    return None


def _sql_read(store: Any, batch: RunKeys) -> Records:
    """One SELECT of the batch's points, all keys at once; only the keys each run lists."""
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    wanted = {run_id: set(keys) for run_id, keys in batch}
    query: Any = select(
        SqlMetric.run_uuid,
        SqlMetric.key,
        SqlMetric.value,
        SqlMetric.step,
        SqlMetric.timestamp,
        SqlMetric.is_nan,
    ).where(SqlMetric.run_uuid.in_(list(wanted)))
    records = empty_records()
    history = records["metric_history"]
    run_col, key_col, value_col = history["run_id"], history["key"], history["value"]
    step_col, time_col = history["step"], history["timestamp"]
    with store.ManagedSessionMaker() as session:
        for run_id, key, value, step, timestamp, is_nan in session.execute(query):
            if key not in wanted[run_id]:
                continue
            run_col.append(run_id)
            key_col.append(key)
            value_col.append(math.nan if is_nan else value)
            step_col.append(step)
            time_col.append(timestamp)
    return records


def _http_read(client: MlflowClient, store: Any, batch: RunKeys) -> Records:
    """The bulk endpoint, key by key over the batch's runs (at most 100 ids a call)."""
    records = empty_records()
    by_key: dict[str, list[str]] = {}
    for run_id, keys in batch:
        for key in keys:
            by_key.setdefault(key, []).append(run_id)
    for key, run_ids in by_key.items():
        for ids in reader.batched(run_ids, BULK_RUN_IDS):
            _append(records, _bulk_points(client, store, key, ids))
    return records


def _bulk_points(
    client: MlflowClient, store: Any, key: str, run_ids: list[str]
) -> list[tuple[str, str, float, int, int]]:
    """All points of `key` for these runs. When an answer is full (so may be cut), the runs
    it surely holds whole are kept (every run it names but the last: answers are sorted by
    run id) and the others are asked again; a single run that fills an answer alone is read
    with get_metric_history, which pages."""
    points: list[tuple[str, str, float, int, int]] = []
    pending = list(run_ids)
    while pending:
        answer = _bulk_call(store, key, pending)
        if len(answer) < BULK_MAX_POINTS:
            points.extend(answer)
            return points
        last = answer[-1][0]
        whole = {point[0] for point in answer} - {last}
        points.extend(point for point in answer if point[0] in whole)
        pending = [run_id for run_id in pending if run_id not in whole]
        if not whole:  # one run fills an answer alone
            for run_id in pending:
                points.extend(
                    (run_id, m.key, m.value, m.step, m.timestamp)
                    for m in client.get_metric_history(run_id, key)
                )
            return points
    return points


def _bulk_call(store: Any, key: str, run_ids: list[str]) -> list[tuple[str, str, float, int, int]]:
    # MLflow is imported where it is used: its import costs seconds a --via sql run skips
    from mlflow.utils import rest_utils

    rest: Any = rest_utils  # untyped
    response = rest.http_request(
        store.get_host_creds(),
        BULK_ENDPOINT,
        "GET",
        params={"run_id": run_ids, "metric_key": key, "max_results": BULK_MAX_POINTS},
    )
    rest.verify_rest_response(response, BULK_ENDPOINT)
    return [
        (m["run_id"], m["key"], float(m["value"]), int(m["step"]), int(m["timestamp"]))
        for m in response.json().get("metrics", [])
    ]


def _append(records: Records, points: list[tuple[str, str, float, int, int]]) -> None:
    if not points:
        return
    history = records["metric_history"]
    for column, values in zip(
        ("run_id", "key", "value", "step", "timestamp"), zip(*points, strict=True), strict=True
    ):
        history[column].extend(values)


@dataclass
class _Cause:
    runs: int = 0
    keys: int = 0
    failed: int = 0
    example: str = ""


@dataclass
class SkippedHistories:
    """An extract's warning lines, with those of runs whose metric history could not be
    read summed up by cause (a store kept in git once gave 76,881 lines of "Run not
    found")."""

    _causes: dict[str, _Cause] = field(default_factory=dict)

    def add(self, lines: Iterable[str]) -> list[str]:
        """Take a batch's warning lines; returns those to log now (any other warning)."""
        other = []
        for line in lines:
            skipped = reader.SKIPPED.match(line)
            if skipped is None:
                other.append(line)
                continue
            cause = self._causes.setdefault(skipped["cause"], _Cause(example=skipped["run_id"]))
            cause.runs += 1
            cause.failed += int(skipped["failed"])
            cause.keys += int(skipped["keys"])
        return other

    @property
    def runs(self) -> int:
        return sum(cause.runs for cause in self._causes.values())

    def table_note(self) -> str:
        """The comment the extract puts on the metric_history table when it asked for
        history, which the report reads (etl/report/curves.py, HISTORY_NOTE)."""
        return HISTORY_NOTE.format(runs=self.runs)

    def summary(self) -> list[str]:
        """A line per cause, the most common first, at most CAUSES_SHOWN and one for the
        rest."""
        causes = sorted(self._causes.items(), key=lambda item: -item[1].runs)
        lines = [
            f"metric history not read for {_runs(c.runs)} ({c.failed:,} of their {c.keys:,} "
            f"keys): {text}; e.g. run {c.example}"
            for text, c in causes[:CAUSES_SHOWN]
        ]
        rest = [c for _, c in causes[CAUSES_SHOWN:]]
        if rest:
            lines.append(
                f"metric history not read for {_runs(sum(c.runs for c in rest))} more, "
                f"for {len(rest)} other causes; e.g. run {rest[0].example}"
            )
        return lines


def _runs(count: int) -> str:
    return f"{count:,} run" + ("" if count == 1 else "s")
