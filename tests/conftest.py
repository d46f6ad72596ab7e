"""Shared fixtures: real MLflow stores built through MLflow's API, a real mlflow server,
and the CLI driven through click's CliRunner.

A store that many tests build alike is built once per session through MLflow's API and
copied per use (tests/templates.py): MLflow's migrations alone take seconds per new SQLite
store, where copying the finished file takes under a millisecond."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from etl.cli import cli
from tests import templates
from tests.perf.make_store import generate_store
from tests.templates import copy_store, isolated, template

LONG_TAG = "x" * 7990 + "ünïcødé"  # MLflow allows 8,000 characters

UNIT_TESTS = Path(__file__).parent / "unit"
# Fixtures that start a real part: a test using one is slow wherever it lives.
REAL_PART_FIXTURES = {
    "rich_store", "served_rich_store", "demo", "many_runs_store", "chromium", "postgres",
    "mysql", "spark",
}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    # A pytest-xdist worker's __main__ has neither __spec__ nor __file__: pyspark.sql.connect
    # (which MLflow imports to tell a Spark DataFrame, e.g. in create_external_model) then
    # takes itself for a doctest run and calls sys.exit(0). Give it a file to find: an
    # empty one, since a spawned process (the extract's workers) runs the main file again.
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = os.devnull
    config.addinivalue_line(
        "markers", "pure: starts no real part, so it runs in the fast layer (-m 'not slow')"
    )


# The files that take longest (seconds on 2 workers, measured with --durations), longest
# first. `--dist loadfile` hands each worker a whole file, in collection order (addopts has
# --no-loadscope-reorder: xdist would order by test count): the longest files go first and
# the short ones fill the gaps at the end, so neither worker waits long for the other.
LONGEST_FILES_FIRST = [
    "test_spark.py", "test_source_contract.py", "test_metric_history.py",
    "test_warehouse_safety.py", "test_job.py", "test_sql_listings.py", "test_workspaces.py",
    "test_alerts.py", "test_extract.py", "test_report_entities.py", "test_bad_night.py",
    "test_eval_datasets.py", "test_sources.py", "test_report_browser.py", "test_via_sql.py",
    "test_entities.py", "test_job_safety.py", "test_hourly_at_scale.py", "test_report.py",
    "test_report_leaderboards.py", "test_alert_channels.py", "test_demo.py", "test_seed.py",
    "test_report_settings.py", "test_mlflow_versions.py", "test_incremental.py",
]  # fmt: skip


def file_rank(item: pytest.Item) -> int:
    name = Path(item.path).name
    if name in LONGEST_FILES_FIRST:
        return LONGEST_FILES_FIRST.index(name)
    return len(LONGEST_FILES_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` marks a test that starts a real part: an MLflow store or server, SMTP,
    Chromium, PostgreSQL, MariaDB, Spark, a subprocess. tests/unit holds pure tests only;
    elsewhere a test is taken to start one unless it is marked `pure`, and a test using one
    of REAL_PART_FIXTURES always does. `pytest -m "not slow"` is the fast layer.

    The longest files run first (LONGEST_FILES_FIRST); each file's tests keep their order."""
    items.sort(key=file_rank)
    for item in items:
        pure = UNIT_TESTS in Path(item.path).parents or item.get_closest_marker("pure")
        if not pure or REAL_PART_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's MLflow settings or litters the checkout."""
    with isolated(tmp_path):
        yield


# the timestamp in front of each error line (etl.cli.error_line)
ERROR_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (?=runreport: error: )", re.M)


def unstamped(text: str) -> str:
    """`text` with the timestamps taken off its error lines, for comparing their words."""
    return ERROR_STAMP.sub("", text)


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


# --- template stores: built once per session, copied per use ----------------------------


@pytest.fixture(scope="session", autouse=True)
def _session_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where tests/templates.py builds; nothing is built until a test asks for a store."""
    templates.session = templates.Templates(tmp_path_factory)
    yield
    templates.session = None


def _migrate(folder: Path) -> None:
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates the schema


def new_store(folder: Path, name: str = "mlflow.db") -> str:
    """An empty MLflow SQLite store at folder/name: a copy of one migrated once per session
    (an existing store there is kept, and migrated as MLflow would)."""
    path = folder / name
    if path.exists():
        uri = f"sqlite:///{path}"
        MlflowClient(uri).search_experiments()
        return uri
    return copy_store(template("empty", _migrate)[0], folder, name)


@dataclass
class StoreFacts:
    """What a fixture store holds, for tests to compare against."""

    uri: str
    run_ids: dict[str, str] = field(default_factory=dict)  # label -> run_id
    experiment_ids: dict[str, str] = field(default_factory=dict)


def log_run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    *,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    parent: str | None = None,
    status: str = "FINISHED",
    start_time: int | None = None,
) -> str:
    run_tags = dict(tags or {})
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=name, tags=run_tags, start_time=start_time)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, v) for k, v in (params or {}).items()],
    )
    if status != "RUNNING":
        end = (start_time + 60_000) if start_time else None
        client.set_terminated(run_id, status=status, end_time=end)
    return run_id


def build_rich_store(folder: Path, uri: str | None = None) -> StoreFacts:
    """Several experiments, a deleted run, a deleted experiment with runs, three levels of
    nesting, NaN and ±inf metrics, metric history, unicode and 8,000-character tags; in a
    new SQLite store in `folder` (a copy of the session's template, built once by
    log_rich_store) unless `uri` names another (empty) store, where it is built."""
    if uri is not None:
        return log_rich_store(uri)
    path, facts = template("rich", lambda here: log_rich_store(new_store(here)))
    return dataclasses.replace(
        facts,
        uri=copy_store(path, folder),
        run_ids=dict(facts.run_ids),
        experiment_ids=dict(facts.experiment_ids),
    )


def log_rich_store(uri: str) -> StoreFacts:
    """build_rich_store's runs, logged through MLflow's API into the empty store at `uri`."""
    client = MlflowClient(uri)
    facts = StoreFacts(uri)
    ids = facts.experiment_ids
    ids["default"] = "0"
    ids["alpha"] = client.create_experiment("alpha", tags={"team": "växjö"})
    ids["beta"] = client.create_experiment("beta")
    ids["gone"] = client.create_experiment("gone")
    runs = facts.run_ids
    runs["plain"] = log_run(
        client, ids["alpha"], "plain", params={"alpha": "0.5"}, metrics={"mse": 3.5}
    )
    runs["odd_metrics"] = log_run(
        client,
        ids["alpha"],
        "odd metrics",
        metrics={"nan": math.nan, "pinf": math.inf, "ninf": -math.inf},
    )
    runs["unicode"] = log_run(
        client, ids["beta"], "日本語 run ✓", tags={"long": LONG_TAG, "emoji": "🚀"}
    )
    runs["root"] = log_run(client, ids["beta"], "root")
    runs["child"] = log_run(client, ids["beta"], "child", parent=runs["root"])
    runs["grandchild"] = log_run(client, ids["beta"], "grandchild", parent=runs["child"])
    runs["failed"] = log_run(client, ids["beta"], "failed", status="FAILED")
    runs["running"] = log_run(client, ids["beta"], "running", status="RUNNING")
    runs["deleted"] = log_run(client, ids["alpha"], "deleted")
    client.delete_run(runs["deleted"])
    runs["in_gone"] = log_run(client, ids["gone"], "in deleted experiment", metrics={"r2": 0.1})
    client.delete_experiment(ids["gone"])
    # a metric with history: the latest (by step, then time) is what search_runs shows
    for step, value in enumerate([0.9, 0.5, 0.2]):
        client.log_metric(runs["plain"], "loss", value, step=step)
    client.set_tag(runs["plain"], "mlflow.note.content", "a description")
    return facts


@pytest.fixture(scope="session")
def rich_store(tmp_path_factory: pytest.TempPathFactory) -> StoreFacts:
    """build_rich_store's store, shared by the whole session: read only."""
    return build_rich_store(tmp_path_factory.mktemp("rich"))


@dataclass
class Demo:
    folder: Path  # mlflow.db, runs.duckdb and reports/
    result: Result  # what `runreport demo` said


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`runreport demo` run once per session into a new folder: the seeded store, its
    warehouse and its report. Read only: copy the folder to change it."""
    folder = tmp_path_factory.mktemp("demo")
    with isolated(folder):
        result = run_cli("demo", "--dir", "demo")
    return Demo(folder / "demo", result)


@pytest.fixture(scope="session")
def many_runs_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """1,200 runs in one experiment, more than search_runs' default page of 1,000, written
    by tests/perf/make_store.py (checked against MLflow by tests/test_generated_store.py)
    in 4 s, most of it MLflow's migrations, where 1,200 create_run calls take 19 s. Read
    only: copy_store it to change it."""
    folder = tmp_path_factory.mktemp("many-runs")
    with isolated(folder):
        made = generate_store(folder / "mlflow.db", runs=1200, experiments=1, deleted_experiments=0)
    return made.uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(kind: str, problem: str | None) -> None:
    """Skip the tests that need a part this machine lacks (a server, a browser, Java);
    under CI=true, where .ci/run installs it, fail them instead."""
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{kind} tests cannot run: {problem}")
    pytest.skip(f"{kind} tests skipped: {problem}")


@dataclass
class MlflowServer:
    uri: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mlflow_server(
    backend_uri: str, workers: int = 1, options: tuple[str, ...] = ()
) -> MlflowServer:
    """A real `mlflow server` on 127.0.0.1 and a free port, answering /health. Its job
    runner (MLflow's GenAI jobs, none of runreport's requests) is off: left on, as MLflow's
    default has it, it starts eight more processes, each importing MLflow, and the server
    takes twice as long to start and ten seconds to stop."""
    port = free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    process = subprocess.Popen(
        [
            mlflow_bin,
            "server",
            "--backend-store-uri",
            backend_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    server = MlflowServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("mlflow server did not answer /health within 90 s")


@pytest.fixture(scope="session")
def served_rich_store(rich_store: StoreFacts) -> Iterator[MlflowServer]:
    """One real `mlflow server` on the rich store for the whole session: read only."""
    server = start_mlflow_server(rich_store.uri)
    yield server
    server.stop()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium through playwright; without it a skip saying what is missing,
    and a failure under CI=true, where .ci/run installs it."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright python package is not installed (pip install playwright)"
    if problem is None and not CHROMIUM.is_file():
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    require("browser", problem)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()
