"""What MLflow's file store (`./mlruns`) skips without failing: an experiment or a run
whose `meta.yaml` is missing or empty (old public stores, a half-copied folder). MLflow
logs a traceback to the cron output and leaves them out; the extract counts them as
warnings, names them in one line, and the report lists them under "needs attention".
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

RUN_FOLDER = re.compile(r"[0-9a-f]{32}")


def skipped_entries(root: Path) -> list[str]:
    """One description per experiment or run folder MLflow cannot read, e.g.
    "experiment 7 (29 runs)" or "run 0a1b... of experiment 3"."""
    skipped: list[str] = []
    for trash in (False, True):
        folder = root / ".trash" if trash else root
        if not folder.is_dir():
            continue
        for experiment in sorted(p for p in folder.iterdir() if p.name.isdigit() and p.is_dir()):
            runs = [p for p in experiment.iterdir() if RUN_FOLDER.fullmatch(p.name) and p.is_dir()]
            if not _readable(experiment / "meta.yaml"):
                skipped.append(f"experiment {experiment.name} ({len(runs)} runs)")
                continue
            skipped += [
                f"run {run.name} of experiment {experiment.name}"
                for run in sorted(runs)
                if not _readable(run / "meta.yaml")
            ]
    return skipped


def warning_line(root: Path, skipped: list[str]) -> str:
    return (
        f"file store {root}: MLflow cannot read {len(skipped)} folders (meta.yaml missing or "
        f"empty), left out: {', '.join(skipped)}"
    )


def drop_skip_tracebacks(record: logging.LogRecord) -> bool:
    """A logging filter: False for MLflow's file store's "Malformed ..." warnings."""
    skip = record.pathname.endswith("file_store.py") and "Malformed" in str(record.msg)
    return not skip


def _readable(meta: Path) -> bool:
    try:
        return meta.is_file() and meta.stat().st_size > 0
    except OSError:
        return False
