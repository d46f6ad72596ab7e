"""Metric history of a file store (`./mlruns`, `file:` URIs), read from its files.

MLflow keeps a run's history of one key in `<root>/<experiment_id>/<run_id>/metrics/<key>`
(a key's `/` makes subfolders; a deleted experiment's folder moves to `<root>/.trash/`,
a deleted run stays where it is), one point a line: `timestamp value step`, parsed as
MLflow's `FileStore._get_metric_from_line` parses it (2 fields: no step, so 0; 5 fields:
a dataset name and digest follow, and MLflow reads the step as 0 there too; any other
count fails the key). MLflow's own `get_metric_history` first insists that the run's
folder holds `metrics/`, `params/` and `artifacts/` folders; a store kept in git has no
empty folder, so there every run is "not found". This reader needs only the metrics
files, writes nothing, and turns a run or key it cannot read into a warning line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from etl.extract.reader import Records, skipped_line
from etl.schema import empty_records

RunKeys = list[tuple[str, list[str]]]  # (run_id, the metric keys it has)

TRASH = ".trash"
METRICS = "metrics"
NO_FOLDER = "the run has no folder in the store"
MALFORMED = "a line of its metrics file is not `timestamp value step`"


def read_history(folders: dict[str, Path], runs: RunKeys, warnings: list[str]) -> Records:
    """Every point of these runs' keys, given the runs' folders (`run_folders`); a run
    with a key that cannot be read adds one line to `warnings` (its other keys are kept)."""
    records = empty_records()
    for run_id, keys in runs:
        folder = folders.get(run_id)
        if folder is None:
            warnings.append(skipped_line(run_id, len(keys), len(keys), NO_FOLDER))
            continue
        failed, cause = _read_run(records, folder / METRICS, run_id, keys)
        if failed:
            warnings.append(skipped_line(run_id, failed, len(keys), cause))
    return records


def run_folders(root: Path, run_ids: set[str]) -> dict[str, Path]:
    """The folder of each of these runs: the active experiments' folders first, then the
    deleted ones' in `.trash`, as MLflow looks for a run (a folder named by no run id,
    such as an experiment's `tags/`, is never one)."""
    found: dict[str, Path] = {}
    for parent in (root, root / TRASH):
        for experiment in _subfolders(parent):
            if experiment.name == TRASH:
                continue
            for run in _subfolders(experiment):
                if run.name in run_ids:
                    found.setdefault(run.name, Path(run.path))
    return found


def _subfolders(parent: Path | os.DirEntry[str]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(parent) as entries:
            return [entry for entry in entries if entry.is_dir()]
    except OSError:  # no .trash, or an unreadable folder: nothing to find there
        return []


def _read_run(records: Records, metrics: Path, run_id: str, keys: Iterable[str]) -> tuple[int, str]:
    """Append the run's points; (keys that could not be read, the first one's cause)."""
    history = records["metric_history"]
    failed, cause = 0, ""
    for key in keys:
        try:
            points = read_points(metrics, key)
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            failed, cause = failed + 1, cause or _cause(exc)
            continue
        if not points:
            continue
        timestamps, values, steps = zip(*points, strict=True)
        history["run_id"].extend([run_id] * len(points))
        history["key"].extend([key] * len(points))
        history["value"].extend(values)
        history["step"].extend(steps)
        history["timestamp"].extend(timestamps)
    return failed, cause


def read_points(metrics: Path, key: str) -> list[tuple[int, float, int]]:
    """(timestamp, value, step) of each line of the key's file, in the file's order."""
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"{key!r} is not a metric key MLflow accepts")
    with open(metrics / key, encoding="utf-8") as file:
        lines = file.read().splitlines()
    return [parse_line(line) for line in lines]


def parse_line(line: str) -> tuple[int, float, int]:
    """One point as FileStore._get_metric_from_line reads it."""
    parts = line.strip().split(" ")
    if len(parts) not in (2, 3, 5):
        raise ValueError(MALFORMED)
    try:
        step = int(parts[2]) if len(parts) == 3 else 0
        return int(parts[0]), float(parts[1]), step
    except ValueError:
        raise ValueError(MALFORMED) from None


def _cause(exc: BaseException) -> str:
    """Why a key could not be read, in words that do not name the run (so that runs
    failing alike are counted together)."""
    if isinstance(exc, UnicodeDecodeError):
        return "its metrics file is not UTF-8 text"
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return str(exc) or exc.__class__.__name__
