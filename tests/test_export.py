"""Issue #17: `runreport export --parquet DIR`, the warehouse as partitioned Parquet with
a manifest, swapped in whole; and `runreport views` without Spark (tests/test_spark.py
runs the views in Spark)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from pathlib import Path

import duckdb
import pytest

from etl.schema import RUN_TABLES, SCHEMA_VERSION
from etl.warehouse.connect import quote_literal
from etl.warehouse.dialects import read_views
from tests.conftest import StoreFacts, run_cli
from tests.test_extract import assert_one_line_error, extract
from tests.test_warehouse_safety import fill, small_disk  # noqa: F401  (a fixture)

RUN_KEYED = tuple(table for table in RUN_TABLES if table != "runs")


@pytest.fixture(scope="module")
def warehouse(rich_store: StoreFacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("export") / "runs.duckdb"
    result = extract(rich_store.uri, db, "--metric-history")
    assert result.exit_code == 0, result.output
    return db


def export(db: Path, folder: Path, *extra: str):
    return run_cli("export", "--parquet", str(folder), "--db", str(db), *extra)


def warehouse_query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def tables_of(db: Path) -> set[str]:
    rows = warehouse_query(db, "select table_name from duckdb_tables() where schema_name='main'")
    return {name for (name,) in rows}


def parquet(folder: Path, table: str) -> str:
    """read_parquet over one exported table, partition folders read as a column."""
    files = quote_literal(str(folder / table / "**" / "*.parquet"))
    return f"read_parquet({files}, hive_partitioning = true)"


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def beside(folder: Path) -> list[str]:
    """Temporary or set-aside folders an export left next to DIR."""
    return sorted(p.name for p in folder.parent.iterdir() if ".runreport-" in p.name)


def test_every_table_round_trips_with_its_manifest(warehouse: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = export(warehouse, lake)
    assert result.exit_code == 0, result.output
    tables = tables_of(warehouse)
    assert f"to {lake}" in result.output and f"exported {len(tables)} tables" in result.output
    assert {p.name for p in lake.iterdir()} == tables | {"_manifest.json"}

    manifest = json.loads((lake / "_manifest.json").read_text())
    assert manifest["runreport_version"] == importlib.metadata.version("runreport")
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["warehouse"] == str(warehouse.resolve())
    (last,) = warehouse_query(
        warehouse,
        "select extract_id, started_at, ended_at, mode, status from extract_log "
        "order by extract_id desc limit 1",
    )
    assert manifest["extract"] == {
        "extract_id": last[0],
        "started_at": last[1].isoformat(),
        "ended_at": last[2].isoformat(),
        "mode": "full",
        "status": "ok",
    }
    assert set(manifest["tables"]) == tables
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"attach {quote_literal(str(warehouse))} as w (read_only)")
    for table in sorted(tables):
        info = manifest["tables"][table]
        columns = con.execute(
            "select column_name, data_type from duckdb_columns() where database_name = 'w' "
            "and table_name = ? order by column_index",
            [table],
        ).fetchall()
        assert [(c["name"], c["type"]) for c in info["columns"]] == columns, table
        (rows,) = con.execute(f"select count(*) from w.{table}").fetchone()
        assert info["rows"] == rows, table
        if rows == 0:
            continue
        names = ", ".join(f'"{name}"' for name, _ in columns)
        # every row back, NaN and ±inf and UTC instants included (DuckDB: NaN = NaN)
        for left, right in (
            (f"w.{table}", parquet(lake, table)),
            (parquet(lake, table), f"w.{table}"),
        ):
            (extra,) = con.execute(
                f"select count(*) from (select {names} from {left} except all "
                f"select {names} from {right})"
            ).fetchone()
            assert extra == 0, table
    values = dict(con.execute(f"select key, value from {parquet(lake, 'metrics')}").fetchall())
    # MLflow's SQL stores keep ±inf as ±the largest double
    assert values["pinf"] == 1.7976931348623157e308 and values["ninf"] == -1.7976931348623157e308
    assert math.isnan(values["nan"])
    con.close()


def test_runs_and_run_tables_are_partitioned_by_experiment(
    warehouse: Path, rich_store: StoreFacts, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    assert export(warehouse, lake).exit_code == 0
    ids = rich_store.experiment_ids
    assert {p.name for p in (lake / "runs").iterdir()} == {
        f"experiment_id={ids[name]}" for name in ("alpha", "beta", "gone")
    }
    manifest = json.loads((lake / "_manifest.json").read_text())
    partitioned = {t for t, info in manifest["tables"].items() if info["partitioned"]}
    assert partitioned == {"runs", *RUN_KEYED, "logged_models", "traces"}
    con = duckdb.connect()
    con.execute(f"attach {quote_literal(str(warehouse))} as w (read_only)")
    for table in ("params", "metrics", "tags", "metric_history"):
        # each row sits in the folder of its run's experiment; the files hold no extra column
        (wrong,) = con.execute(
            f"select count(*) from {parquet(lake, table)} as p "
            "join w.runs on runs.run_id = p.run_id where runs.experiment_id <> p.experiment_id"
        ).fetchone()
        assert wrong == 0, table
        file = next((lake / table).rglob("*.parquet"))
        columns = [
            name
            for (name,) in con.execute(
                f"select name from parquet_schema({quote_literal(str(file))}) "
                "where num_children is null"
            ).fetchall()
        ]
        assert "experiment_id" not in columns and "run_id" in columns, table
    plain = ids["alpha"]
    (mse,) = con.execute(
        f"select value from {parquet(lake, 'metrics')} where experiment_id = '{plain}' "
        "and key = 'mse'"
    ).fetchone()
    assert mse == 3.5
    con.close()
    assert sorted(p.name for p in (lake / "experiments").iterdir()) == ["data_0.parquet"]


def test_an_export_replaces_the_previous_one_whole(warehouse: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert export(warehouse, lake).exit_code == 0
    stale = lake / "runs" / "experiment_id=999"
    stale.mkdir()
    (stale / "data_0.parquet").write_bytes(b"old")
    first = json.loads((lake / "_manifest.json").read_text())["exported_at"]
    again = export(warehouse, lake)
    assert again.exit_code == 0, again.output
    assert not stale.exists()
    assert json.loads((lake / "_manifest.json").read_text())["exported_at"] >= first
    assert beside(lake) == []


def test_export_folder_from_the_config(warehouse: Path, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "runreport.toml"
    config.parent.mkdir()
    config.write_text(f'[warehouse]\npath = "{warehouse}"\n\n[export]\nparquet = "lake"\n')
    result = run_cli("export", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "conf" / "lake" / "_manifest.json").is_file()


def test_a_folder_that_is_not_an_export_is_left_alone(warehouse: Path, tmp_path: Path) -> None:
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = tree_digest(folder)
    result = export(warehouse, folder)
    assert_one_line_error(result, 2, str(folder), "_manifest.json", "new or empty folder")
    assert tree_digest(folder) == before
    assert beside(folder) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--parquet", "a-file"), ("is a file", "Choose another --parquet")),
        (("--parquet", "missing/lake"), ("does not exist", "Create the folder")),
        (("--parquet", "lake", "--db", "nowhere.duckdb"), ("no warehouse at nowhere.duckdb",)),
        ((), ("no export folder given", "--parquet DIR")),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    warehouse: Path, tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    (tmp_path / "a-file").write_text("x")
    given = args if "--db" in args else (*args, "--db", str(warehouse))
    result = run_cli("export", *given)
    assert_one_line_error(result, 2, *words)
    assert not (tmp_path / "lake").exists()
    assert beside(tmp_path / "lake") == []


def test_a_full_disk_keeps_the_previous_export(
    warehouse: Path,
    small_disk: Path,  # noqa: F811
) -> None:
    lake = small_disk / "lake"
    assert export(warehouse, lake).exit_code == 0
    before = tree_digest(lake)
    filler = fill(small_disk, 0)
    result = export(warehouse, lake)
    assert_one_line_error(result, 1, "Parquet export", str(lake), "previous export is unchanged")
    assert tree_digest(lake) == before
    assert beside(lake) == []
    filler.unlink()
    assert export(warehouse, lake).exit_code == 0


def test_views_duckdb_recreates_the_warehouse_views(warehouse: Path) -> None:
    result = run_cli("views", "--dialect", "duckdb")
    assert result.exit_code == 0, result.output
    statements = [s for s in result.output.split(";\n\n") if s.strip()]
    names = [s.split(" AS", 1)[0].rsplit(" ", 1)[-1] for s in statements]
    assert sorted(names) == sorted(read_views())
    con = duckdb.connect(str(warehouse), read_only=True)
    con.execute("set TimeZone = 'UTC'")
    try:
        for statement in statements:
            con.execute(statement)
        for name in names:
            stored = con.execute(
                f"select * from main.{name} except all select * from temp.main.{name}"
            )
            assert stored.fetchall() == [], name
            (count,) = con.execute(f"select count(*) from temp.main.{name}").fetchone()
            (expected,) = con.execute(f"select count(*) from main.{name}").fetchone()
            assert count == expected, name
    finally:
        con.close()
