"""Fetch runs with several worker processes, each reading different experiments.

The per-run cost inside MLflow (SQL, ORM objects, entities) is the bottleneck of an extract
and is the same for every client; on a machine with several cores, reading different
experiment batches in separate processes overlaps it. Workers turn pages into plain
records and pass them back on a bounded queue, so memory holds only a few pages; the
parent loads them into DuckDB in arrival order.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from etl.config import default
from etl.errors import JobFailed
from etl.extract import entities, history, reader
from etl.schema import empty_records

T = TypeVar("T")

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

Records = reader.Records
PAGES_IN_FLIGHT_PER_WORKER = 2
_DONE = "done"
_ERROR = "error"
_PAGE = "page"


def experiment_tasks(experiment_ids: list[str], workers: int) -> list[list[str]]:
    """Split experiments into about 8 tasks per worker, so a big experiment does not leave
    the other workers idle for long; never more ids per task than a request should name."""
    if not experiment_ids:
        return []
    per_task = math.ceil(len(experiment_ids) / (workers * 8))
    per_task = max(1, min(reader.EXPERIMENT_BATCH_SIZE, per_task))
    return list(reader.batched(experiment_ids, per_task))


def page_chunks(
    runs: list[Run], client: MlflowClient, metric_history: bool
) -> Iterator[tuple[int, Records, list[str]]]:
    """(runs counted, records, warnings): the page's run records first, then its metric
    history a batch of runs at a time (etl.extract.history), so memory holds one batch of
    history, however many points the page's runs logged. Each skipped history is a warning."""
    records = entities.merge(reader.run_records(runs), entities.run_input_output_records(runs))
    entities.merge(records, entities.model_input_records(client, runs))
    yield len(runs), records, []
    if not metric_history:
        return
    run_keys = [(run.info.run_id, list(run.data.metrics.keys())) for run in runs]
    warnings: list[str] = []
    for chunk in history.history_chunks(client, run_keys, warnings):
        yield 0, chunk, warnings[:]
        warnings.clear()


def page_records(
    runs: list[Run], client: MlflowClient, metric_history: bool
) -> tuple[Records, list[str]]:
    """The page's records in one batch, and a warning line for each metric history that
    was skipped."""
    records = empty_records()
    warnings: list[str] = []
    for _, chunk, chunk_warnings in page_chunks(runs, client, metric_history):
        records = entities.merge(records, chunk)
        warnings.extend(chunk_warnings)
    return records, warnings


def _worker(
    tracking_uri: str,
    tasks: mp.Queue[list[str] | None],
    results: mp.Queue[tuple[str, int, Any]],
    page_size: int,
    metric_history: bool,
    parent_pid: int,
) -> None:
    def put(item: tuple[str, int, Any]) -> None:
        while True:
            try:
                results.put(item, timeout=1.0)
                return
            except queue.Full:
                if os.getppid() != parent_pid:  # the parent was killed: stop, don't hang
                    os._exit(1)

    try:
        client = reader.make_client(tracking_uri)
        while True:
            task = tasks.get()
            if task is None:
                break
            for runs in reader.run_pages(client, task, page_size=page_size):
                for count, records, warnings in page_chunks(runs, client, metric_history):
                    put((_PAGE, count, (records, warnings)))
    except BaseException as exc:  # report any failure to the parent, which raises it
        message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
        put((_ERROR, 0, message.strip().splitlines()[0] if message.strip() else repr(exc)))
    put((_DONE, 0, None))


def parallel_run_records(
    tracking_uri: str,
    experiment_ids: list[str],
    workers: int,
    page_size: int = default("page_size"),
    metric_history: bool = False,
) -> Iterator[tuple[int, Records, list[str]]]:
    """(runs in page, records, warnings) for every run of these experiments, from `workers`
    processes."""
    task_list = experiment_tasks(experiment_ids, workers)
    workers = max(1, min(workers, len(task_list)))
    context = mp.get_context("spawn")  # no forked copies of MLflow's engines and threads
    tasks: mp.Queue[list[str] | None] = context.Queue()
    results: mp.Queue[tuple[str, int, Any]] = context.Queue(
        maxsize=workers * PAGES_IN_FLIGHT_PER_WORKER
    )
    for task in task_list:
        tasks.put(task)
    for _ in range(workers):
        tasks.put(None)
    processes = [
        context.Process(
            target=_worker,
            args=(tracking_uri, tasks, results, page_size, metric_history, os.getpid()),
            daemon=True,
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        running = workers
        while running:
            try:
                kind, count, payload = results.get(timeout=5)
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    raise JobFailed(
                        "the extract's worker processes ended without finishing",
                        "Check memory and the tracking store, then run the extract again",
                    ) from None
                continue
            if kind == _PAGE:
                records, warnings = payload
                yield count, records, warnings
            elif kind == _ERROR:
                raise JobFailed(
                    f"reading runs failed in a worker: {str(payload)[:300]}",
                    "The previous warehouse is unchanged; check the tracking store and try again",
                )
            else:
                running -= 1
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a thread while the caller consumes: reading the store (the
    SQLite driver lets go of the GIL while it steps) overlaps the warehouse's inserts
    (DuckDB lets go of it too). An exception in the thread is raised here, in order."""
    done = object()
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ahead.put(item)
            ahead.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            ahead.put(exc)

    producer = threading.Thread(target=produce, name="runreport-read-ahead", daemon=True)
    producer.start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # let a blocked put finish so the thread can end
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)
