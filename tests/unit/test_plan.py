"""Which plan an extract follows, given what the previous warehouse holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.refresh import ExtractOptions, plan_extract
from etl.schema import SCHEMA_VERSION
from etl.warehouse.extract_log import PreviousWarehouse

DB = Path("runs.duckdb")
URI = "sqlite:///mlflow.db"
LAST = datetime(2026, 12, 1, 6, 0, tzinfo=timezone.utc)


def previous(**changes: object) -> PreviousWarehouse:
    values: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "last_start": LAST,
        "last_full_start": LAST - timedelta(days=1),
        "runs": 20,
        "deleted_ids": {"d1"},
        "running_ids": {"r1", "r2"},
    }
    values.update(changes)
    return PreviousWarehouse(**values)  # type: ignore[arg-type]


def test_an_incremental_plan_starts_an_overlap_before_the_last_extract() -> None:
    options = ExtractOptions(overlap=timedelta(minutes=30), metric_history=True)
    plan = plan_extract(DB, URI, previous(), "incremental", options)
    assert plan.mode == "incremental"
    assert plan.since == LAST - timedelta(minutes=30)
    assert plan.since_ms == int((LAST - timedelta(minutes=30)).timestamp() * 1000)
    assert plan.stored_deleted == {"d1"} and plan.was_running == {"r1", "r2"}
    assert plan.metric_history is True


def test_full_is_full_whatever_the_warehouse_holds() -> None:
    plan = plan_extract(DB, URI, previous(), "full", ExtractOptions())
    assert plan.mode == "full" and plan.since is None and not plan.stored_deleted


@pytest.mark.parametrize(
    ("why", "before", "uri", "options"),
    [
        ("no warehouse", None, URI, ExtractOptions()),
        ("no successful extract", previous(last_start=None), URI, ExtractOptions()),
        ("another schema version", previous(schema_version=1), URI, ExtractOptions()),
        ("a file store", previous(), "file:///tmp/mlruns", ExtractOptions()),
        (
            "the last full extract is too old",
            previous(last_full_start=LAST - timedelta(days=9)),
            URI,
            ExtractOptions(full_every=timedelta(days=7)),
        ),
        (
            "never a full extract",
            previous(last_full_start=None),
            URI,
            ExtractOptions(full_every=timedelta(days=7)),
        ),
    ],
)
def test_an_incremental_falls_back_to_full(
    why: str, before: PreviousWarehouse | None, uri: str, options: ExtractOptions
) -> None:
    assert plan_extract(DB, uri, before, "incremental", options).mode == "full", why


def test_a_recent_full_extract_keeps_the_incremental() -> None:
    options = ExtractOptions(full_every=timedelta(days=7))
    assert plan_extract(DB, URI, previous(), "incremental", options).mode == "incremental"


def test_a_combined_warehouse_is_not_replaced_by_one_store() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_extract(DB, URI, previous(combined_sources=["lab", "prod"]), "full", ExtractOptions())
    assert caught.value.exit_code == 2
    assert "combines the sources lab, prod" in caught.value.one_line()
    assert "[[sources]]" in caught.value.one_line()
