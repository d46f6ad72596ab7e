"""The lines reports/index.html shows for a report's changes (report.json `changes`)."""

from __future__ import annotations

from etl.report.history_index import change_lines, entry_of, render_history_index


def test_each_kind_of_change_is_one_line() -> None:
    changes = {
        "new_best": [
            {"experiment_name": "churn", "run_name": "lgbm-7", "metric": "val_auc",
             "value": 0.91234, "previous_value": 0.9}
        ],
        "best_removed": [{"experiment_id": "4", "run_id": "abc", "metric": "rmse", "value": 3}],
        "new_failures": [{"run_name": f"r{n}"} for n in range(7)],
        "new_stuck": [{"run_id": "xyz"}],
        "new_parents_left_open": [],
    }  # fmt: skip
    assert change_lines(changes) == [
        "New best in churn: lgbm-7, val_auc 0.9123 (was 0.9)",
        "Best removed in 4: abc, rmse 3",
        "7 new failed runs: r0, r1, r2, r3, r4 and 2 more",
        "1 new stuck run: xyz",
    ]


def test_names_are_escaped_and_a_failed_extract_is_shown() -> None:
    report = {
        "date": "2026-12-02",
        "headline": "<img src=x onerror=alert(1)>",
        "new_runs": 1200,
        "failed": 0,
        "data_as_of": "2026-12-01T06:01:00+00:00",
        "extract_failure": {"failed_at": "x", "error": "cannot reach the tracking server"},
        "changes": None,
    }
    html = render_history_index([entry_of("2026-12-02", report)])
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "extract failed: data as of 2026-12-01T06:01:00+00:00" in html
    assert "1,200 new runs" in html and "– running" in html
    assert "First report: nothing to compare with." in html
