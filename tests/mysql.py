"""A throwaway MySQL-compatible server (MariaDB) per test session, for MLflow stores on MySQL.

Import the fixture into a test module (`from tests.mysql import mysql  # noqa: F401`).
Debian ships MariaDB as its MySQL (`apt-get install mariadb-server`); MLflow runs its MySQL
migrations on it unchanged. The server's data lives in a temporary folder
(mariadb-install-db), it listens on 127.0.0.1 and a free port with its socket in the same
folder, in utf8mb4 as MySQL 8 is by default, and it is stopped and removed after the
session. As root it runs as the `mysql` user the package creates. Without the server the
tests skip (they fail under CI=true, where .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, require

USER, PASSWORD = "runreport", "s3cret"


@dataclass
class MysqlServer:
    folder: Path
    port: int

    def execute(self, sql: str) -> None:
        """Run statements as the server's root, over its socket."""
        socket = str(self.folder / "mysqld.sock")
        subprocess.run(
            ["mariadb", "--socket", socket, "-u", "root", "-e", sql],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip

    def uri(self, database: str, user: str = USER, password: str = PASSWORD) -> str:
        return f"mysql+pymysql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str) -> str:
        self.execute(f"create database `{name}`")
        return self.uri(name)


def _missing() -> str | None:
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (apt-get install mariadb-server)"
    try:
        import pymysql  # noqa: F401
    except ImportError:
        return "the pymysql driver is not installed (pip install pymysql)"
    return None


def _server_binary() -> str:
    return shutil.which("mariadbd") or "/usr/sbin/mariadbd"


@contextlib.contextmanager
def _server() -> Iterator[MysqlServer]:
    folder = Path(tempfile.mkdtemp(prefix="runreport-mysql-"))
    run_as = ["--user=mysql"] if os.geteuid() == 0 else []
    if run_as:
        shutil.chown(folder, user="mysql")
    server = MysqlServer(folder, free_port())
    data = folder / "data"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", *run_as,
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    process = subprocess.Popen(
        [_server_binary(), "--no-defaults", f"--datadir={data}", *run_as,
         f"--socket={folder / 'mysqld.sock'}", f"--port={server.port}",
         "--bind-address=127.0.0.1", "--skip-log-bin", "--character-set-server=utf8mb4",
         "--innodb-flush-log-at-trx-commit=0", f"--log-error={folder / 'server.log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_until_up(server, process)
        server.execute(
            f"create user '{USER}'@'%' identified by '{PASSWORD}'; grant all on *.* to '{USER}'@'%'"
        )
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_up(server: MysqlServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            server.execute("select 1")
            return
        except subprocess.CalledProcessError:
            log = server.folder / "server.log"
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"MariaDB did not start:\n{tail}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def mysql() -> Iterator[MysqlServer]:
    require("MySQL", _missing())
    with _server() as server:
        yield server
