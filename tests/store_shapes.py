"""The tracking stores every source is held to (tests/test_source_contract.py): each shape a
session fixture, built once through MLflow's own API and only read by the tests.

Import the fixtures into a test module (`from tests.store_shapes import ...  # noqa: F401`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import StoreFacts, build_rich_store
from tests.mysql import MysqlServer, mysql  # noqa: F401  (a fixture)
from tests.perf.make_store import GeneratedStore, generate_store
from tests.postgres import PostgresCluster, postgres  # noqa: F401  (a fixture)


def rich_store_in(uri: str, folder: Path) -> StoreFacts:
    """build_rich_store's store in the empty database at `uri`, its artifacts in `folder`."""
    MlflowClient(uri).search_experiments()  # creates the schema
    with contextlib.chdir(folder):
        return build_rich_store(folder, uri)


@pytest.fixture(scope="session")
def pg_rich_store(
    postgres: PostgresCluster,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> StoreFacts:
    """build_rich_store's store, on PostgreSQL."""
    return rich_store_in(postgres.new_database("rich"), tmp_path_factory.mktemp("pg-rich"))


@pytest.fixture(scope="session")
def my_rich_store(
    mysql: MysqlServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> StoreFacts:
    """build_rich_store's store, on MySQL."""
    return rich_store_in(mysql.new_database("rich"), tmp_path_factory.mktemp("my-rich"))


@pytest.fixture(scope="session")
def generated_store(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStore:
    """The benchmark's generator at 400 runs in 4 experiments: NaN and ±inf metrics, history,
    deleted runs and a deleted experiment, more runs than one page of the contract's."""
    folder = tmp_path_factory.mktemp("generated")
    with contextlib.chdir(folder):
        return generate_store(folder / "g.db", runs=400, experiments=4, seed=7, diverged_share=0.05)
