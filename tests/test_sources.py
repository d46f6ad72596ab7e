"""[[sources]]: two tracking stores into one warehouse equal two separate warehouses with
the tracking_source column added, table for table and view for view, though the stores'
experiment ids collide; a failing source leaves the combined warehouse as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from etl.refresh import run_extract
from etl.warehouse.build import is_settings_table
from tests.conftest import StoreFacts, build_rich_store, run_cli
from tests.test_entities import EntityStore, build_entity_store

Rows = list[str]


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[StoreFacts, EntityStore]:
    folder = tmp_path_factory.mktemp("sources")
    return build_rich_store(folder / "lab"), build_entity_store(folder / "genai")


def write_config(folder: Path, uris: dict[str, str]) -> Path:
    sources = "".join(
        f'\n[[sources]]\nname = "{name}"\ntracking_uri = "{uri}"\n' for name, uri in uris.items()
    )
    path = folder / "runreport.toml"
    path.write_text(f'[warehouse]\npath = "{folder / "runs.duckdb"}"\n{sources}')
    return path


Connection = duckdb.DuckDBPyConnection


@contextmanager
def reading(*dbs: Path) -> Iterator[list[Connection]]:
    """A read-only connection to each warehouse, held for many queries: opening one (its
    catalog of tables and views) takes tens of milliseconds."""
    cons = [duckdb.connect(str(db), read_only=True) for db in dbs]
    try:
        yield cons
    finally:
        for con in cons:
            con.close()


def relations(con: Connection) -> dict[str, str]:
    """name -> 'table' or 'view', of the main schema."""
    rows = con.execute(
        "select table_name, table_type from information_schema.tables where table_schema = 'main'"
    ).fetchall()
    return {name: "view" if kind == "VIEW" else "table" for name, kind in rows}


def rows_of(con: Connection, relation: str, columns: list[str], where: str = "") -> Rows:
    selected = ", ".join(f'"{c}"' for c in columns)
    found = con.execute(f'select {selected} from "{relation}" {where}').fetchall()
    return sorted(map(repr, found))


def columns_of(con: Connection, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f'describe "{relation}"').fetchall()]


# Rows that differ between two extracts by when they ran, not by what they read.
EXTRACT_TIMES = {"extract_log", "model_alias_history", "alias_moves"}


def test_two_sources_equal_two_warehouses_with_the_source_column(
    two_stores: tuple[StoreFacts, EntityStore], tmp_path: Path
) -> None:
    lab, genai = two_stores
    config = write_config(tmp_path, {"lab": lab.uri, "genai": genai.uri})
    result = run_cli("extract", "--config", str(config))
    assert result.exit_code == 0, result.output
    combined = tmp_path / "runs.duckdb"
    alone = {
        "lab": tmp_path / "lab.duckdb",
        "genai": tmp_path / "genai.duckdb",
    }
    run_extract(lab.uri, alone["lab"], show_progress=False)
    run_extract(genai.uri, alone["genai"], show_progress=False)

    with reading(combined, *alone.values()) as (both, *separate):
        # the collision the combined warehouse must keep apart: both stores have experiment 0
        assert rows_of(both, "experiments", ["tracking_source"], "where experiment_id = '0'") == [
            "('genai',)",
            "('lab',)",
        ]
        kinds = relations(both)
        compared = []
        for name, con in zip(alone, separate, strict=True):
            for relation, kind in relations(con).items():
                if relation == "runreport_meta" or relation in EXTRACT_TIMES:
                    continue
                columns = columns_of(con, relation)
                assert kinds[relation] == kind, relation
                expected = rows_of(con, relation, columns)
                if is_settings_table(relation):  # one configuration: one copy, no source
                    assert columns_of(both, relation) == columns, relation
                    where = ""
                else:
                    assert columns_of(both, relation)[0] == "tracking_source", relation
                    where = f"where tracking_source = '{name}'"
                assert rows_of(both, relation, columns, where) == expected, (name, relation)
                compared.append((name, relation, len(expected)))
        # each source's extract history, under its name
        extract_log = rows_of(both, "extract_log", ["tracking_source", "mode", "status"])
    sizes = {(name, relation): n for name, relation, n in compared}
    assert sizes["lab", "runs"] == 10 and sizes["genai", "runs"] == 2
    assert sizes["genai", "traces"] == 4 and sizes["genai", "model_versions"] == 4
    assert sizes["lab", "leaderboard"] > 0 and sizes["lab", "nested_searches"] > 0
    assert len({relation for _, relation, _ in compared}) >= 50  # every table and view
    assert extract_log == [
        "('genai', 'full', 'ok')",
        "('lab', 'full', 'ok')",
    ]


def test_incremental_sources_then_report_and_export(
    two_stores: tuple[StoreFacts, EntityStore], tmp_path: Path
) -> None:
    lab, genai = two_stores
    config = write_config(tmp_path, {"lab": lab.uri, "genai": genai.uri})
    for flags in ([], ["--incremental"]):
        result = run_cli("extract", "--config", str(config), *flags)
        assert result.exit_code == 0, result.output
    combined = tmp_path / "runs.duckdb"
    with reading(combined) as (con,):
        extract_log = rows_of(con, "extract_log", ["tracking_source", "mode"])
    assert extract_log == [
        "('genai', 'full')",
        "('genai', 'incremental')",
        "('lab', 'full')",
        "('lab', 'incremental')",
    ]
    assert sorted(p.name for p in (tmp_path / "runs.sources").glob("*.duckdb")) == [
        "genai.duckdb",
        "lab.duckdb",
    ]

    report = run_cli("report", "--config", str(config), "--out", str(tmp_path / "reports"))
    assert report.exit_code == 0, report.output
    summary = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert summary["runs"] == 8 + 2  # the active runs of lab and of genai, summed

    export = run_cli("export", "--config", str(config), "--parquet", str(tmp_path / "lake"))
    assert export.exit_code == 0, export.output
    lake = tmp_path / "lake"
    assert sorted(p.name for p in (lake / "runs").iterdir()) == [
        "tracking_source=genai",
        "tracking_source=lab",
    ]
    con = duckdb.connect()
    pattern = str(lake / "metrics" / "**" / "*.parquet")
    exported = con.execute(
        f"select tracking_source, count(*) from read_parquet('{pattern}', "
        "hive_partitioning = true) group by all order by 1"
    ).fetchall()
    with reading(combined) as (both,):
        assert exported == [
            ("genai", len(rows_of(both, "metrics", ["run_id"], "where tracking_source = 'genai'"))),
            ("lab", len(rows_of(both, "metrics", ["run_id"], "where tracking_source = 'lab'"))),
        ]


def refused_and_untouched(config: Path, attempt: list[str], words: str) -> None:
    """Build the combined warehouse, make one `attempt` that must fail with exit 2 and one
    error line holding `words`, and check the warehouse is byte for byte as it was."""
    assert run_cli("extract", "--config", str(config)).exit_code == 0
    combined = config.parent / "runs.duckdb"
    before = hashlib.sha256(combined.read_bytes()).hexdigest()
    result = run_cli(*attempt)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "runreport: error:" in line]
    assert len(errors) == 1 and words in errors[0], result.output
    assert hashlib.sha256(combined.read_bytes()).hexdigest() == before


def test_a_one_store_extract_into_a_combined_warehouse_is_refused(
    two_stores: tuple[StoreFacts, EntityStore], tmp_path: Path
) -> None:
    lab, genai = two_stores
    config = write_config(tmp_path, {"lab": lab.uri, "genai": genai.uri})
    one_store = ["extract", "--tracking-uri", lab.uri, "--db", str(tmp_path / "runs.duckdb")]
    refused_and_untouched(config, one_store, "combines the sources genai, lab")


def test_a_failing_source_leaves_the_combined_warehouse(
    two_stores: tuple[StoreFacts, EntityStore], tmp_path: Path
) -> None:
    lab, genai = two_stores
    config = write_config(tmp_path, {"lab": lab.uri, "genai": genai.uri})
    gone = f"sqlite:///{tmp_path / 'gone.db'}"
    config.with_name("gone.toml").write_text(
        config.read_text().replace(genai.uri, gone), encoding="utf-8"
    )
    attempt = ["extract", "--config", str(config.with_name("gone.toml"))]
    refused_and_untouched(config, attempt, "gone.db")
