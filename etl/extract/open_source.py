"""Open the source the `via` setting names, with MLflow's errors as one-line failures.

`auto` (the default) reads through MLflow's API, except on a database store whose schema
revision is not the installed mlflow's: MLflow would migrate an older store in place (the
team's own server then refuses its database) and refuse a newer one, so such a store is
read through its tables instead. An explicit `search_runs` on such a store is refused,
never migrated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol
from urllib.parse import urlsplit

from etl.config import Via
from etl.errors import ConfigError
from etl.extract import entities, sql_store
from etl.extract.api_source import ApiSource, raise_as_job_failure
from etl.extract.source import RunSource
from etl.extract.table_source import TableSource
from etl.extract.tracking import SQL_SCHEMES, redact

log = logging.getLogger("runreport")


class SourceOptions(Protocol):
    """What opening a source reads of the extract's options (etl.refresh.ExtractOptions)."""

    @property
    def via(self) -> Via: ...
    @property
    def page_size(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def timeout_seconds(self) -> int: ...
    @property
    def entity_page_sizes(self) -> entities.PageSizes | None: ...


@contextlib.contextmanager
def open_source(uri: str, options: SourceOptions) -> Iterator[RunSource]:
    """The source for `options.via`, open for the body of the `with`; an MLflow or network
    error anywhere in that body becomes a JobFailed naming the store."""
    try:
        if choose_source(uri, options.via, options.timeout_seconds) == TableSource.name:
            with TableSource(uri, options.timeout_seconds, options.entity_page_sizes) as source:
                yield source
        else:
            yield ApiSource(uri, options.page_size, options.workers, options.entity_page_sizes)
    except Exception as exc:
        raise_as_job_failure(exc, uri)
        raise


def choose_source(uri: str, via: Via, timeout_seconds: int) -> str:
    """`sql` or `search_runs`: what `via` means for this store (see the module's text)."""
    if via == "sql":
        return "sql"
    scheme = urlsplit(uri).scheme.lower().split("+", 1)[0]
    if scheme not in SQL_SCHEMES:
        return "search_runs"  # a tracking server or a file store: MLflow changes neither
    store = sql_store.read_revision(uri, timeout_seconds)
    expected = mlflow_head_revision()
    if store == expected:
        return "search_runs"
    if via == "search_runs":
        raise ConfigError(
            f"the tracking store {redact(uri)} is at schema revision {store}, the installed "
            f"mlflow expects {expected}: reading it through MLflow would "
            f"{'migrate' if _is_older(store) else 'be refused by'} it",
            "Use --via sql (or auto), which reads its tables and changes nothing, or install "
            "the mlflow version the store was written by",
        )
    if scheme not in sql_store.SUPPORTED_SCHEMES:
        raise ConfigError(
            f"the tracking store {redact(uri)} is at schema revision {store}, the installed "
            f"mlflow expects {expected}, and runreport reads {scheme} stores through MLflow "
            "only, which would change it",
            "Install the mlflow version the store was written by",
        )
    log.info(
        "the tracking store is at schema revision %s and the installed mlflow at %s: "
        "reading its tables directly (--via sql), which MLflow would migrate or refuse",
        store,
        expected,
    )
    return "sql"


def mlflow_head_revision() -> str:
    """The schema revision the installed mlflow writes and expects."""
    # MLflow's own answer, imported only for a database store (its import costs seconds)
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())  # type: ignore[no-untyped-call]


def _is_older(revision: str) -> bool:
    """Whether the installed mlflow's migrations know `revision` (an older store)."""
    # alembic comes with MLflow; only on the refusal path
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    config = _get_alembic_config(db_url="")  # type: ignore[no-untyped-call]
    script = ScriptDirectory.from_config(config)
    try:
        return script.get_revision(revision) is not None
    except Exception:  # an unknown revision: newer than the installed mlflow
        return False
