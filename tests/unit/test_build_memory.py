"""The DuckDB memory limit of a warehouse build: what an incremental's deletes need."""

from __future__ import annotations

import pytest

from etl.warehouse.build import BUILD_MEMORY_CEILING, CHANGE_MEMORY_FLOOR, MB, memory_limit_for


@pytest.mark.parametrize(
    ("size_mb", "limit_mb"),
    [
        (1, 256),
        (34, 256),  # issue 23, item 0: the 121,200-run warehouse got 32 MB and failed
        (66, 256),
        (200, 400),
        (10_000, 8 * 1024),
    ],
)
def test_item0_an_incremental_gets_twice_its_file_and_at_least_the_floor(
    size_mb: int, limit_mb: int
) -> None:
    assert memory_limit_for(size_mb * MB) == limit_mb * MB
    assert CHANGE_MEMORY_FLOOR <= memory_limit_for(size_mb * MB) <= BUILD_MEMORY_CEILING
