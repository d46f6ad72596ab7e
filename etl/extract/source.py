"""The one read interface of the extract: what a tracking source offers the extract job.

Two sources implement it: etl/extract/api_source.py reads through MLflow's client API
(`search_runs` and the listings; any tracking URI), etl/extract/table_source.py reads a SQL
store's tables directly (`--via sql`). The job (etl/refresh.py) is one loop over
`RunSource`, whichever it is; adding a source is a class with these four methods, opened
in etl/extract/open_source.py (docs/extract-sources.md says how).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Records = dict[str, dict[str, list[Any]]]  # table -> column -> values (etl/schema.py)
RunKeys = list[tuple[str, list[str]]]  # (run_id, the metric keys it logged)
Mode = Literal["full", "incremental"]


@dataclass(frozen=True)
class Plan:
    """What one extract reads: every run (full), or the runs that can have changed since
    `since` (incremental: see etl/extract/incremental.py), given what the previous
    warehouse holds as deleted and as RUNNING."""

    metric_history: bool = False
    since: datetime | None = None
    stored_deleted: frozenset[str] = frozenset()
    was_running: frozenset[str] = frozenset()

    @property
    def mode(self) -> Mode:
        return "full" if self.since is None else "incremental"

    @property
    def since_ms(self) -> int:
        assert self.since is not None, "a full plan has no since"
        return int(self.since.timestamp() * 1000)


@dataclass
class Batch:
    """Records to append to the warehouse. `replaces` are run ids whose rows the warehouse
    deletes first (an incremental extract re-reads them; an id the store no longer has
    is deleted and not replaced); `runs` is how many runs the batch brings, for progress;
    `warnings` are lines to log (a metric history that could not be read), counting
    `warning_count` in extract_log when one line names several."""

    records: Records
    runs: int = 0
    replaces: Sequence[str] = ()
    warnings: list[str] = field(default_factory=list)
    warning_count: int | None = None  # None: one per line

    @property
    def counted_warnings(self) -> int:
        return len(self.warnings) if self.warning_count is None else self.warning_count


class RunSource(Protocol):
    """A tracking store, read. `experiments()` is called first, `listings()` last."""

    name: str  # the `via` setting's value that picks this source

    def experiments(self) -> Records:
        """experiments and experiment_tags, deleted experiments included."""
        ...

    def batches(self, plan: Plan) -> Iterator[Batch]:
        """The runs the plan reads with their params, latest metrics, tags, dataset inputs
        and model outputs (and metric history when the plan asks for it), in batches that
        keep memory flat; every run of every lifecycle stage, each at most once."""
        ...

    def history(self, runs: RunKeys) -> Iterator[Batch]:
        """Every logged point of these runs' metric keys; a run that cannot be read is a
        warning, never a failure."""
        ...

    def listings(self) -> Records:
        """MLflow 3's listed entities, each table whole (etl.extract.entities.LISTED_TABLES):
        logged models, the model registry, traces with their assessments."""
        ...
