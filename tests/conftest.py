"""Shared fixtures: real MLflow stores built through MLflow's API, a real mlflow server,
and the CLI driven through click's CliRunner."""

from __future__ import annotations

import math
import os
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

LONG_TAG = "x" * 7990 + "ünïcødé"  # MLflow allows 8,000 characters


UNIT_TESTS = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything outside tests/unit runs real parts (MLflow stores and servers, SMTP,
    Chromium, PostgreSQL, Spark): marked slow, so `pytest -m "not slow"` is the fast loop."""
    for item in items:
        if UNIT_TESTS not in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's MLflow settings or litters the checkout."""
    for name in list(os.environ):
        if name.startswith(("MLFLOW_", "RUNREPORT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def new_store(folder: Path, name: str = "mlflow.db") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / name}"
    MlflowClient(uri).search_experiments()  # creates the schema
    return uri


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
    new SQLite store in `folder` unless `uri` names another (empty) store."""
    uri = uri or new_store(folder)
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
    return build_rich_store(tmp_path_factory.mktemp("rich"))


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


def start_mlflow_server(backend_uri: str, workers: int = 1) -> MlflowServer:
    """A real `mlflow server` on 127.0.0.1 and a free port, answering /health."""
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
            time.sleep(0.5)
    server.stop()
    raise RuntimeError("mlflow server did not answer /health within 90 s")


@pytest.fixture(scope="session")
def served_rich_store(rich_store: StoreFacts) -> Iterator[MlflowServer]:
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
