"""Open the source the `via` setting names, with MLflow's errors as one-line failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from etl.extract import entities
from etl.extract.api_source import ApiSource, raise_as_job_failure
from etl.extract.source import RunSource
from etl.extract.table_source import TableSource


@contextlib.contextmanager
def open_source(
    uri: str,
    via: str,
    page_size: int,
    workers: int,
    entity_page_sizes: entities.PageSizes | None = None,
) -> Iterator[RunSource]:
    """The source for `via` ("search_runs" or "sql"), open for the body of the `with`; an
    MLflow or network error anywhere in that body becomes a JobFailed naming the store."""
    try:
        if via == TableSource.name:
            with TableSource(uri, entity_page_sizes) as table_source:
                yield table_source
        else:
            yield ApiSource(uri, page_size, workers, entity_page_sizes)
    except Exception as exc:
        raise_as_job_failure(exc, uri)
        raise
