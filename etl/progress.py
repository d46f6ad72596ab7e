"""Progress for long steps: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

log = logging.getLogger("runreport")


class RunProgress:
    """Counts runs as pages arrive. The total is unknown: MLflow has no count endpoint."""

    LOG_EVERY_SECONDS = 10.0

    def __init__(self, label: str, total_experiments: int, show_bar: bool | None = None) -> None:
        self.label = label
        self.total_experiments = total_experiments
        self.show_bar = sys.stderr.isatty() if show_bar is None else show_bar
        self.runs = 0
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
                TextColumn("{task.fields[runs]:,} runs"),
                TimeElapsedColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, runs=0)
        return self

    def advance(self, runs: int) -> None:
        self.runs += runs
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, runs=self.runs)
        elif time.monotonic() - self._last_log >= self.LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            log.info("%s: %d runs so far", self.label, self.runs)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
