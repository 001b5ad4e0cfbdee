"""The views: one per table, primary rows only, replicas in <table>_all, both layouts."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from generators.lake import MANIFEST
from generators.schemas import FACT_TABLES, TABLES
from pipeline.journal import Journal
from queries.views import connect, view_sql

DATED = ("recordings", "actions", "skill_events", "usage_daily")  # `date` in both layouts


def columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    return dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})")
                .fetchall())


def test_a_view_per_table_and_all_views_for_facts(con: duckdb.DuckDBPyConnection) -> None:
    names = {r[0] for r in con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert names == set(TABLES) | {f"{t}_all" for t in FACT_TABLES}


@pytest.mark.parametrize("table", list(TABLES))
def test_view_rows_match_manifest(con: duckdb.DuckDBPyConnection, manifest: dict,
                                  table: str) -> None:
    m = manifest["tables"][table]
    by_region = dict(con.execute(f"SELECT region, count(*) FROM {table} GROUP BY region")
                     .fetchall())
    assert sum(by_region.values()) == m["rows"]
    assert by_region == {r: n for r, n in m["rows_by_region"].items() if n}


@pytest.mark.parametrize("table", FACT_TABLES)
def test_all_views_include_replicas(con: duckdb.DuckDBPyConnection, manifest: dict,
                                    table: str) -> None:
    m = manifest["tables"][table]
    primary, replica = con.execute(
        f"SELECT count(*) FILTER (NOT is_replica), count(*) FILTER (is_replica) "
        f"FROM {table}_all").fetchone()
    assert (primary, replica) == (m["rows"], m["replica_rows"])
    assert replica > 0
    assert con.execute(f"SELECT count(*) FROM {table}_all WHERE is_replica <> "
                       "(region <> origin)").fetchone()[0] == 0


def test_columns(con: duckdb.DuckDBPyConnection, manifest: dict) -> None:
    layout = manifest["layout"]
    for table in TABLES:
        cols = columns(con, table)
        file_cols = set(TABLES[table].file_schema(layout).names)
        assert file_cols <= set(cols)
        assert cols["region"] == "VARCHAR"
        assert not {"origin", "bucket"} & set(cols)
        dated = table in DATED or (layout == "date" and table in FACT_TABLES)
        assert ("date" in cols) == dated, table
        if dated:
            assert cols["date"] == "DATE"
    for table in FACT_TABLES:
        cols = columns(con, f"{table}_all")
        assert cols["origin"] == "VARCHAR" and cols["is_replica"] == "BOOLEAN"
        assert ("bucket" in cols) == (layout == "bucket")
        if layout == "bucket":
            assert cols["bucket"] == "INTEGER"


def test_same_columns_in_both_layouts(lakes: dict[str, Path]) -> None:
    a, b = connect(lakes["date"]), connect(lakes["bucket"])
    for table in TABLES:
        ca, cb = columns(a, table), columns(b, table)
        if table in ("audio", "transcripts"):  # no time column: no date without the path
            ca.pop("date")
        assert ca == cb, table


@pytest.mark.parametrize("table", DATED)
def test_dates_agree_across_layouts(lakes: dict[str, Path], table: str) -> None:
    """The bucket layout derives the local day; it must be the date layout's partition."""
    sql = f"SELECT region, date, count(*) FROM {table} GROUP BY ALL ORDER BY ALL"
    a = {(r, d): n for r, d, n in connect(lakes["date"]).execute(sql).fetchall()}
    b = {(r, d): n for r, d, n in connect(lakes["bucket"]).execute(sql).fetchall()}
    if table in ("recordings", "usage_daily"):
        assert a == b
        return
    # Dated by their recording's day in the date layout, by their own instant in the bucket
    # one: only the few rows executed just after local midnight may change day.
    moved = sum(abs(a.get(k, 0) - b.get(k, 0)) for k in a.keys() | b.keys())
    assert sum(a.values()) == sum(b.values())
    assert moved <= 0.01 * sum(a.values())


def test_date_filter_prunes_files(lakes: dict[str, Path]) -> None:
    con = connect(lakes["date"])
    day = con.execute("SELECT min(date) FROM recordings").fetchone()[0]
    plan = con.execute("EXPLAIN ANALYZE SELECT count(*) FROM recordings WHERE date = ?",
                       [day]).fetchall()[0][1]
    manifest = json.loads((lakes["date"] / MANIFEST).read_text())
    n_regions = len(manifest["regions"])
    assert f"Scanning Files: {n_regions}/{len(manifest['tables']['recordings']['files'])}" \
        in plan


def test_partition_like_parent_directories_change_nothing(lake: Path, manifest: dict,
                                                         tmp_path: Path) -> None:
    """A lake stored under directories named like partitions (`region=zz`, `date=…`, `run=3`)
    shows the same rows, columns and partition values as at a plain path, and a date filter
    still skips files. DuckDB's Hive partitioning alone took `region=zz` for every row."""
    moved = tmp_path / "region=zz" / "date=2020-01-01" / "run=3" / "lake"
    shutil.copytree(lake, moved, copy_function=os.link)
    plain, odd = connect(lake), connect(moved)
    for view in [*TABLES, *(f"{t}_all" for t in FACT_TABLES)]:
        assert columns(odd, view) == columns(plain, view), view
        digest = f"SELECT count(*), sum(hash(columns(*))) FROM {view}"
        assert odd.execute(digest).fetchone() == plain.execute(digest).fetchone(), view
    for table in TABLES:  # Polars, given the table's directory, reads partitions below it only
        # and, as the README calls it, past a killed scrub's temp file (hidden) beside the data
        part = next((moved / table).rglob("*.parquet"))
        Journal(moved, "killed").temp_path(part).write_bytes(b"PAR1 half-written")

        def regions(root: Path, table: str = table) -> pl.DataFrame:
            return (pl.scan_parquet(root / table, hive_partitioning=True,
                                    hidden_file_prefix=".")
                    .group_by("region").len().sort("region").collect())
        assert regions(moved).equals(regions(lake)), table
    if manifest["layout"] == "date":
        day = odd.execute("SELECT min(date) FROM recordings").fetchone()[0]
        plan = odd.execute("EXPLAIN ANALYZE SELECT count(*) FROM recordings WHERE date = ?",
                           [day]).fetchall()[0][1]
        files = len(manifest["tables"]["recordings"]["files"])
        read = int(re.search(r"Total Files Read: (\d+)", plan).group(1))
        assert read == len(manifest["regions"]) < files


def test_views_use_absolute_paths(lake: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lake.parent)
    sql = view_sql(Path(lake.name))
    assert f"'{lake.resolve()}/customers/" in sql
    db = tmp_path / "views.duckdb"
    connect(Path(lake.name), str(db)).close()
    monkeypatch.chdir(tmp_path)
    with duckdb.connect(str(db), read_only=True) as fresh:
        assert fresh.execute("SELECT count(*) FROM customers").fetchone()[0] > 0


def test_table_without_files_gives_empty_view(lakes: dict[str, Path], tmp_path: Path) -> None:
    for layout, src in lakes.items():
        lake = tmp_path / layout
        lake.mkdir()
        shutil.copy(src / MANIFEST, lake / MANIFEST)
        shutil.copytree(src / "customers", lake / "customers")
        con, full = connect(lake), connect(src)
        assert con.execute("SELECT count(*) FROM customers").fetchone()[0] > 0
        for view in [*TABLES, *(f"{t}_all" for t in FACT_TABLES)]:
            if view == "customers":
                continue
            assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] == 0, view
            assert columns(con, view) == columns(full, view), view


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="_lake.json"):
        connect(tmp_path)


@pytest.mark.parametrize("table", list(TABLES))
def test_polars_reads_every_table(lake: Path, manifest: dict, table: str) -> None:
    m = manifest["tables"][table]
    lf = pl.scan_parquet(str(lake / table / "**/*.parquet"), hive_partitioning=True)
    assert lf.select(pl.len()).collect().item() == m["rows"] + m["replica_rows"]
    schema = lf.collect_schema()
    assert schema["region"] == pl.String
    if table == "usage_daily":
        assert schema["date"] == pl.Date


def test_views_file_of_a_format_lake_is_refused_for_what_it_is(lakes: dict[str, Path],
                                                               tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    flake = tmp_path / "flake"
    flake.mkdir()
    manifest = json.loads((lakes["date"] / MANIFEST).read_text())
    (flake / MANIFEST).write_text(json.dumps({**manifest, "format": "delta"}))
    result = CliRunner().invoke(app, ["views", "--lake", str(flake), "--db",
                                      str(tmp_path / "v.duckdb")])
    assert result.exit_code == 2
    assert "is a delta lake" in result.output
    assert "cannot read the manifest" not in result.output
    assert not (tmp_path / "v.duckdb").exists()
