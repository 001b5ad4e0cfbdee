"""The DuckDB CLI (pip package duckdb-cli, same version as the library) reads every table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from generators.schemas import TABLES
from pipeline.cli import app

DUCKDB = Path(sys.executable).parent / "duckdb"


@pytest.mark.skipif(not DUCKDB.exists() and not shutil.which("duckdb"),
                    reason="duckdb CLI not installed")
def test_duckdb_cli_reads_every_table_through_the_views(lake: Path, manifest: dict,
                                                        tmp_path: Path) -> None:
    db = tmp_path / "lake.duckdb"
    assert CliRunner().invoke(app, ["views", "--lake", str(lake), "--db", str(db)]).exit_code == 0
    sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in TABLES)
    out = subprocess.run([str(DUCKDB), str(db), "-csv", "-noheader", "-c", sql],
                         capture_output=True, text=True, check=True).stdout
    counts = dict(line.split(",") for line in out.strip().splitlines())
    assert {t: int(n) for t, n in counts.items()} == {
        t: manifest["tables"][t]["rows"] for t in TABLES}


@pytest.mark.skipif(not DUCKDB.exists(), reason="duckdb CLI not installed")
def test_duckdb_cli_reads_the_files_directly(lake: Path, manifest: dict) -> None:
    for t in TABLES:
        sql = (f"SELECT count(*) FROM read_parquet('{lake}/{t}/**/*.parquet', "
               "hive_partitioning = true)")
        out = subprocess.run([str(DUCKDB), "-csv", "-noheader", "-c", sql],
                             capture_output=True, text=True, check=True).stdout
        entry = manifest["tables"][t]
        assert int(out.strip()) == entry["rows"] + entry["replica_rows"], t
