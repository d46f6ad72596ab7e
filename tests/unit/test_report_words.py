"""The words a report chooses, without a warehouse: the headline the mail's subject leads
with, experiment names cut so that no two look alike, a dataset's place, and the MLflow UI
pages the report links to."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from etl.report.format import NameCutter, dataset_uri, headline, middle_cut
from etl.report.links import COMPARE_AT_MOST, Links

FIGURES = {"new_runs": 12, "failed": 2, "window_days": 7, "new_runs_since_previous": 3}
NOTHING: dict[str, list[object]] = {
    "new_best": [], "best_removed": [], "new_failures": [], "new_stuck": [],
    "new_parents_left_open": [],
}  # fmt: skip


def changes(**lists: list[object]) -> dict[str, list[object]]:
    return {**NOTHING, **lists}


@pytest.mark.parametrize(
    ("figures", "changed", "said"),
    [
        (
            FIGURES,
            changes(new_best=[{"experiment_name": "churn-model"}], new_failures=[{}]),
            "New best in churn-model; 3 new runs since the last report, 1 failed",
        ),
        (
            {**FIGURES, "new_runs_since_previous": 0},
            changes(),
            "Nothing new since the last report",
        ),
        (
            FIGURES,
            changes(new_best=[{"experiment_name": n} for n in ("a", "b", "c", "d")]),
            "New best in a, b and 2 more experiments; 3 new runs since the last report, 0 failed",
        ),
        (
            {**FIGURES, "new_runs_since_previous": 1},
            changes(new_stuck=[{}], new_parents_left_open=[{}, {}]),
            "1 run newly stuck; 2 parents newly left open; 1 new run since the last report, "
            "0 failed",
        ),
        (
            {**FIGURES, "new_runs_since_previous": 0},
            changes(best_removed=[{"experiment_name": "vision"}]),
            "Best run removed in vision",
        ),
        (
            {**FIGURES, "new_runs_since_previous": None},
            None,
            "First report: 12 new runs in the last 7 days, 2 failed",
        ),
        (
            {**FIGURES, "new_runs_since_previous": 0, "extract_failure": {"error": "x"}},
            changes(),
            "The last extract failed; nothing new since the last report",
        ),
    ],
)
def test_the_headline_leads_with_the_most_important_change(
    figures: dict[str, object], changed: dict[str, list[object]] | None, said: str
) -> None:
    assert headline(figures, changed) == said


def test_names_are_cut_in_the_middle() -> None:
    assert middle_cut("customer-churn-model-weekly-retrain", 20) == "customer-c…y-retrain"
    assert len(middle_cut("x" * 100, 30)) == 30
    assert middle_cut("short", 30) == "short"


def test_no_two_names_cut_alike() -> None:
    names = [f"team-vision-{kind}-resnet50-imagenet-finetune" for kind in ("a", "b", "c")]
    names += [f"churn-{n:03d}-quarterly-retrain-with-all-features" for n in range(50)]
    names += ["churn-model", "x" * 40, "x" * 41]
    cutter = NameCutter(names)
    for limit in (12, 20, 30, 80):
        shown = [cutter.cut(name, limit) for name in names]
        assert len(set(shown)) == len(names), limit
        for name, text in zip(names, shown, strict=True):
            if text != name:
                head, tail = text.split("…")
                assert name.startswith(head) and name.endswith(tail)
    assert cutter.cut("churn-model", 30) == "churn-model"


@pytest.mark.parametrize(
    ("source", "place"),
    [
        ('{"uri": "s3://bucket/train.parquet"}', "s3://bucket/train.parquet"),
        ('{"url": "https://user:secret@data.example.com/x.csv"}', "https://user:***@data.example.com/x.csv"),
        ('{"path": "org/dataset", "config_name": "default"}', "org/dataset"),
        ('{"file": "x.csv"}', "x.csv"),
        ('{"tags": {"mlflow.source.name": "train.py"}}', ""),
        ("not json", "not json"),
        (None, ""),
    ],
)  # fmt: skip
def test_a_dataset_reads_as_where_it_is(source: str | None, place: str) -> None:
    assert dataset_uri(source) == place


def test_links_follow_the_mlflow_ui_routes() -> None:
    links = Links("https://mlflow.example.com")
    assert (
        links.registered_model("churn model") == "https://mlflow.example.com/#/models/churn%20model"
    )
    assert links.logged_model("m-1", "7") == "https://mlflow.example.com/#/experiments/7/models/m-1"
    assert links.traces("7") == "https://mlflow.example.com/#/experiments/7/traces"
    url = urlsplit(links.children("p", "7", ["a", "b"]))
    route, _, query = url.fragment.partition("?")
    assert route == "/compare-runs"
    asked = {key: json.loads(value[0]) for key, value in parse_qs(query).items()}
    assert asked == {"runs": ["a", "b"], "experiments": ["7"]}
    many = links.children("p", "7", [str(n) for n in range(COMPARE_AT_MOST + 1)])
    assert many == (
        "https://mlflow.example.com/#/experiments/7"
        "?searchFilter=tags.mlflow.parentRunId%20%3D%20%27p%27"
    )
    assert Links().children("p", "7", ["a"]) == "" and links.children("p", "7", []) == ""
