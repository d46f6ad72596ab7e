"""Template stores: built once per test session through MLflow's API, copied per use.

MLflow's migrations alone take seconds per new SQLite store, where copying the finished
file takes under a millisecond. Each template is built in its own folder, which is also
the working directory while it is built, so its artifact locations (MLflow's default
./mlruns) point there; a copy keeps them, and no test writes artifacts to them.

The state lives here rather than in conftest.py because pytest imports conftest.py as
`conftest` and the test modules import it again as `tests.conftest`: two module objects,
but one of this module."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


@contextlib.contextmanager
def isolated(folder: Path) -> Iterator[pytest.MonkeyPatch]:
    """No MLFLOW_* or RUNREPORT_* variable of the developer's, and `folder` as the working
    directory, until the block ends."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("MLFLOW_", "RUNREPORT_")):
                patch.delenv(name)
        # MLflow prices LLM spans from a model catalog it would fetch from github.com
        # first: tests never reach the internet, so it reads its bundled copy at once
        patch.setenv("MLFLOW_MODEL_CATALOG_URI", "")
        patch.chdir(folder)
        yield patch


class Templates:
    """The session's template stores, each built on first use in its own folder."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.built: dict[str, tuple[Path, Any]] = {}

    def get(self, name: str, build: Callable[[Path], T]) -> tuple[Path, T]:
        if name not in self.built:
            folder = self.factory.mktemp(f"template-{name}")
            with isolated(folder):
                made = build(folder)
            path = folder / "mlflow.db"
            assert path.is_file(), f"template {name} made no {path}"
            self.built[name] = (path, made)
        return self.built[name]


session: Templates | None = None  # set by conftest.py's session fixture


def template(name: str, build: Callable[[Path], T]) -> tuple[Path, T]:
    """The SQLite file of template `name` and what `build` returned: `build(folder)` runs
    once per session and makes folder/mlflow.db through MLflow's API. The file is shared:
    copy it (copy_store) to use it."""
    assert session is not None, "template stores are built inside a pytest session"
    return session.get(name, build)


def copy_store(path: Path, folder: Path, name: str = "mlflow.db") -> str:
    """A copy of the SQLite store `path` at folder/name; returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / name)
    return f"sqlite:///{folder / name}"
