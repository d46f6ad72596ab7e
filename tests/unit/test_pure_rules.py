"""Fast checks of the pure rules the report and the views rest on: values to text, the
report window and its periods, metric directions and experiment globs."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from etl.report.data import make_window, next_period, period_of, period_start, periods_of_window
from etl.resources import sql_dir
from etl.values import FLOAT_MAX, cell, safe_text, to_json, to_text
from etl.warehouse.settings import ViewSettings, glob_to_like


@pytest.mark.parametrize(
    ("value", "csv", "html"),
    [
        (math.nan, "NaN", "NaN"),
        (math.inf, "Infinity", "∞"),
        (-math.inf, "-Infinity", "−∞"),
        (FLOAT_MAX, "Infinity", "∞"),  # MLflow's SQL stores keep +inf as the largest double
        (-FLOAT_MAX, "-Infinity", "−∞"),
        (0.1 + 0.2, "0.30000000000000004", "0.3"),
        (None, "", ""),
        (True, "true", "true"),
        (date(2026, 11, 28), "2026-11-28", "2026-11-28"),
        (b"\x01\xff", "01ff", "01ff"),
    ],
)
def test_one_rule_for_values(value: object, csv: str, html: str) -> None:
    assert to_text(value, "csv") == csv
    assert to_text(value, "html") == html


def test_json_keeps_numbers_and_names_the_rest() -> None:
    assert to_json([1, 2.5, math.nan, -math.inf, Decimal("1.25"), {"a": None}]) == [
        1,
        2.5,
        "NaN",
        "-Infinity",
        1.25,
        {"a": None},
    ]


@pytest.mark.parametrize(
    ("text", "written"),
    [("=SUM(A1)", "'=SUM(A1)"), ("@cmd", "'@cmd"), ("-1.5", "-1.5"), ("-x", "'-x"), ("ok", "ok")],
)
def test_no_csv_cell_is_a_formula(text: str, written: str) -> None:
    assert safe_text(text) == written
    assert cell(text) == written
    assert cell(-3) == -3


def test_window_of_days_and_of_a_since_date() -> None:
    now = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
    window = make_window(now, "UTC", None, 7)
    assert (window.start, window.days, window.report_day) == (
        datetime(2026, 11, 21, 6, 0, tzinfo=timezone.utc),
        7,
        date(2026, 11, 28),
    )
    since = make_window(now, "Europe/Berlin", date(2026, 11, 1), 7)
    assert since.days == 28
    assert since.start == datetime(2026, 10, 31, 23, 0, tzinfo=timezone.utc)


def test_long_windows_count_by_week_then_month() -> None:
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert [period_of(make_window(now, "UTC", None, d)) for d in (7, 62, 63, 182, 183)] == [
        "day",
        "day",
        "week",
        "week",
        "month",
    ]
    assert period_start(date(2026, 11, 28), "week") == date(2026, 11, 23)  # a Monday
    assert next_period(date(2026, 12, 1), "month") == date(2027, 1, 1)
    window = make_window(now, "UTC", None, 90)
    statuses = {"finished": 3, "failed": 0, "running": 0, "killed": 0, "scheduled": 0}
    rows = [{"start_date": date(2026, 11, 24), "runs": 3, **statuses}]
    weeks = periods_of_window(rows, window, "week")
    assert weeks[-1]["start_date"] == date(2026, 11, 23) and weeks[-1]["runs"] == 3
    assert sum(week["runs"] for week in weeks) == 3


def test_metric_directions_ignore_case_and_override_the_defaults() -> None:
    directions = ViewSettings(metric_directions={"LOSS": True, "*_latency": False}).directions()
    assert directions["loss"] is True  # overridden
    assert directions["*_latency"] is False
    assert directions["rmse"] is False and directions["*_score"] is True  # defaults


def test_experiment_globs_become_like_patterns() -> None:
    assert glob_to_like("CIFAR*") == "CIFAR%"
    assert glob_to_like("exp_?%") == "exp\\__\\%"


def test_read_ahead_yields_in_order_and_raises_where_the_reader_failed() -> None:
    from etl.extract.parallel import read_ahead

    def pages() -> Iterator[int]:
        yield from range(5)
        raise ValueError("the store went away")

    seen = []
    with pytest.raises(ValueError, match="the store went away"):
        for page in read_ahead(pages()):
            seen.append(page)
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_stops_its_thread_when_the_consumer_stops() -> None:
    import threading

    from etl.extract.parallel import read_ahead

    for page in read_ahead(iter(range(1_000)), depth=1):
        if page == 3:
            break
    assert not [t for t in threading.enumerate() if t.name == "runreport-read-ahead"]


def test_the_views_spell_the_infinity_stand_in_as_the_python_side_does() -> None:
    """SQL cannot import FLOAT_MAX: every literal of it in sql/ must be that double, and
    every view file that tells finite values apart must use it."""
    literals = {
        path.name: re.findall(r"\d\.\d+e[+]?\d+", path.read_text())
        for path in sql_dir().glob("*.sql")
    }
    using = {name for name, found in literals.items() if found}
    assert using == {"metric_values.sql", "metric_curves.sql", "best_logged_model.sql"}
    assert {float(text) for found in literals.values() for text in found} == {FLOAT_MAX}
