"""The report's CSV files: UTF-8, a header row, cells by etl/values.py's rule (no cell a
spreadsheet reads as a formula; NaN, Infinity, -Infinity)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from etl.values import cell, safe_text


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write the rows; returns how many were written."""
    written = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_text(name) for name in columns])
        for row in rows:
            writer.writerow([cell(value) for value in row])
            written += 1
    return written
