"""One rule for turning a value into text, for every output runreport writes.

- NULL: an empty CSV cell, JSON null, nothing in HTML.
- NaN: "NaN" everywhere.
- +inf / -inf: "Infinity" / "-Infinity" in CSV and JSON (the spelling JavaScript, Python's
  json module and `float()` read back; JSON has no number for them, so it is a string),
  "∞" / "−∞" in HTML. MLflow's SQL stores save ±inf as ±1.7976931348623157e308, the
  largest double (`FLOAT_MAX`), so that value reads as infinite too.
- Other floats: the shortest text that reads back as the same double (`repr`) in CSV,
  a JSON number; up to 6 significant digits in HTML. DECIMAL: its exact digits as text,
  a JSON number.
- Booleans "true"/"false"; dates, times and timestamps ISO 8601 (with their offset);
  lists and dicts JSON text in a CSV cell; bytes hex; anything else `str()`.
- CSV cells a spreadsheet opens safely: a text cell that begins with =, +, -, @, a tab or
  a carriage return gets a leading single quote (OWASP's advice against CSV injection),
  unless the text is a plain number, which a spreadsheet cannot run. Numbers stay numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Any, Literal

# MLflow's SQL stores save +inf and -inf as the largest double; the views read it from
# the finite_metrics view, Python from here.
FLOAT_MAX = 1.7976931348623157e308

Target = Literal["csv", "json", "html"]
NON_FINITE = {
    "csv": ("NaN", "Infinity", "-Infinity"),
    "json": ("NaN", "Infinity", "-Infinity"),
    "html": ("NaN", "∞", "−∞"),
}


def is_finite(value: float) -> bool:
    """False for NaN, ±inf and MLflow's ±inf stand-in."""
    return math.isfinite(value) and abs(value) < FLOAT_MAX


def float_text(value: float, target: Target = "csv") -> str:
    if not is_finite(value):
        nan, plus, minus = NON_FINITE[target]
        return nan if math.isnan(value) else plus if value > 0 else minus
    return f"{value:.6g}" if target == "html" else repr(value)


def to_text(value: Any, target: Target = "csv") -> str:
    """`value` as text for `target` (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return float_text(value, target)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(to_json(value), ensure_ascii=False, allow_nan=False)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def to_json(value: Any) -> Any:
    """`value` as JSON can hold it: numbers stay numbers where JSON has one."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (float, Decimal)):
        number = float(value)
        return number if is_finite(number) else float_text(number, "json")
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    return to_text(value, "json")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_text(text: str) -> str:
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def cell(value: object) -> object:
    """One value as the csv module should write it (report CSVs and `runreport sql`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return safe_text(value)
    return to_text(value, "csv")
