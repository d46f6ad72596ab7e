"""CSV files a spreadsheet opens safely: UTF-8, a header row, no cell read as a formula.

A text cell that begins with =, +, -, @, a tab or a carriage return gets a leading single
quote (OWASP's advice against CSV injection), unless the text is a plain number, which a
spreadsheet cannot run. Numbers stay numbers: a float -1.5 is written -1.5.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_text(text: str) -> str:
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell(value: object) -> object:
    """One value as the csv module should write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return safe_text(str(value))


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
