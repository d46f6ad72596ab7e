"""A throwaway PostgreSQL cluster per test session, for MLflow stores on PostgreSQL.

Import the fixtures into a test module (`from tests.postgres import postgres  # noqa: F401`).
The cluster lives in a temporary folder: initdb, then pg_ctl start on 127.0.0.1 and a free
port, with its unix socket in the same folder; it is stopped and removed after the session.
initdb refuses to run as root, so as root the server runs as the `postgres` user that the
Debian package creates. Without the server binaries the tests skip (they fail under
CI=true, where .ci/run installs them: apt-get install postgresql).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, require

SUPERUSER = "postgres"


def server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class PostgresCluster:
    bin_dir: Path
    folder: Path
    port: int
    run_as: list[str]  # prefix running a command as the cluster's owner

    def command(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [*self.run_as, str(self.bin_dir / tool), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)

    def uri(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        credentials = user if password is None else f"{user}:{password}"
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run statements as the superuser, outside a transaction (CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(self.uri(database), autocommit=True) as con:
            con.execute(sql)

    def new_database(self, name: str) -> str:
        self.execute(f'create database "{name}"')
        return self.uri(name)


def _missing() -> str | None:
    if server_binaries() is None:
        return "PostgreSQL server binaries are not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'psycopg[binary]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as another user"
    return None


@contextlib.contextmanager
def _cluster(bin_dir: Path) -> Iterator[PostgresCluster]:
    folder = Path(tempfile.mkdtemp(prefix="runreport-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, user=SUPERUSER)
        run_as = ["runuser", "-u", SUPERUSER, "--"]
    cluster = PostgresCluster(bin_dir, folder, free_port(), run_as)
    data = str(folder / "data")
    try:
        cluster.command(
            "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {folder} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        log = str(folder / "server.log")
        cluster.command("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start")
        try:
            yield cluster
        finally:
            cluster.command("pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    require("PostgreSQL", _missing())
    bin_dir = server_binaries()
    assert bin_dir is not None
    with _cluster(bin_dir) as cluster:
        yield cluster
