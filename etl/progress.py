"""Progress for long steps: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

log = logging.getLogger("runreport")

Records = Mapping[str, Mapping[str, Sequence[Any]]]  # table -> column -> values


class RunProgress:
    """Counts runs as pages arrive. The total is unknown: MLflow has no count endpoint.

    With `history`, it counts the metric-history phase too, in keys: each batch's `metrics`
    rows (one per run and key) are keys to read, and the distinct (run, key) pairs of its
    `metric_history` rows are keys read. The total grows as pages of runs are listed; a
    store of one page knows it from the start. A key whose history could not be read is
    never counted as read; `--via sql` streams history in row chunks, where a key spread
    over two chunks counts twice, so the count is held to the total."""

    LOG_EVERY_SECONDS = 10.0

    def __init__(
        self,
        label: str,
        total_experiments: int,
        show_bar: bool | None = None,
        history: bool = False,
    ) -> None:
        self.label = label
        self.total_experiments = total_experiments
        self.show_bar = sys.stderr.isatty() if show_bar is None else show_bar
        self.history = history
        self.runs = 0
        self.keys = 0  # metric keys whose history is to be read
        self.keys_read = 0
        self._last_log = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RunProgress:
        if self.show_bar:
            # rich only on a terminal: cron runs never draw a bar
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[runs]:,} runs{task.fields[phase]}"),
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, runs=0, phase="")
        return self

    def advance(self, runs: int, records: Records | None = None) -> None:
        self.runs += runs
        if self.history and records is not None:
            self.keys += len(records.get("metrics", {}).get("run_id", ()))
            history = records.get("metric_history", {})
            pairs = zip(history.get("run_id", ()), history.get("key", ()), strict=True)
            self.keys_read += len(set(pairs))
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, runs=self.runs, phase=self._phase(" · "))
        elif time.monotonic() - self._last_log >= self.LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            log.info("%s: %d runs so far%s", self.label, self.runs, self._phase("; "))

    def _phase(self, separator: str) -> str:
        """ "metric history: 12,000 of 76,881 keys", once there are keys to read."""
        if not self.history or not self.keys:
            return ""
        read = min(self.keys_read, self.keys)
        return f"{separator}metric history: {read:,} of {self.keys:,} keys"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
