"""Tracking stores written by other MLflow versions, with those versions' own packages.

Each version lives in a throwaway virtual environment under the test cache
(`RUNREPORT_TEST_CACHE`, default ~/.cache/runreport-tests), made by `.ci/run` through
`python -m tests.old_mlflow install` (the package registry is reached there, never by a
test). A test asks `store_written_by(version, folder)` for a SQLite store that version
wrote with tests/old_store_writer.py: experiments, runs with params, NaN and ±inf metrics,
tags, nesting, metric history, a dataset input, a deleted run and a deleted experiment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# version -> what its environment installs (mlflow-skinny carries the tracking store; the
# SQLAlchemy and alembic each release was built against)
VERSIONS = {
    "2.16.2": ["mlflow-skinny==2.16.2", "sqlalchemy>=2,<2.1", "alembic<1.15"],
    "3.0.1": ["mlflow-skinny==3.0.1", "sqlalchemy>=2,<2.1", "alembic<1.17"],
    "3.18.0": ["mlflow-skinny==3.18.0", "sqlalchemy>=2,<2.1", "alembic"],
}
OLDEST, NEWEST = "2.16.2", "3.18.0"
WRITER = Path(__file__).with_name("old_store_writer.py")


def cache() -> Path:
    return Path(os.environ.get("RUNREPORT_TEST_CACHE", Path.home() / ".cache/runreport-tests"))


def python_of(version: str) -> Path:
    return cache() / f"mlflow-{version}" / "bin" / "python"


def missing(version: str) -> str | None:
    """Why the environment of `version` cannot be used, or None."""
    if python_of(version).is_file():
        return None
    home = python_of(version).parent.parent
    return f"no MLflow {version} environment at {home} (python -m tests.old_mlflow install)"


def run_with(version: str, *args: str) -> str:
    """Run python of that MLflow version; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [str(python_of(version)), *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def store_written_by(version: str, folder: Path) -> str:
    """A new SQLite store in `folder`, written by MLflow `version`; its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run_with(version, str(WRITER), uri)
    return uri


def upgrade_with(version: str, uri: str) -> None:
    """Open the store with MLflow `version`, which migrates it to that version's head."""
    run_with(
        version,
        "-c",
        f"from mlflow import MlflowClient; MlflowClient({uri!r}).search_experiments()",
    )


def install() -> None:
    for version, packages in VERSIONS.items():
        if missing(version) is None:
            continue
        home = python_of(version).parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        pip = [str(home / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *packages], check=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.old_mlflow install")
    install()
