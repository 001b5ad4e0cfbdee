"""The audit finds every kind of trace, visible or hidden, and nothing of other customers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from pipeline.audit import run_audit
from pipeline.cli import app
from pipeline.lake import Lake
from tests.pipeline.conftest import snapshot


def speakers_of_pii(lake: Path) -> list[int]:
    t = pl.read_parquet(lake / "transcripts" / "**" / "*.parquet", hive_partitioning=True)
    said = t.filter(pl.col("text").str.contains("my (email|phone number) is"))
    return said["customer_id"].unique().sort().to_list()[:3]


def test_finds_keys_and_spoken_pii_before_a_scrub(date_src: Path) -> None:
    ids = speakers_of_pii(date_src)
    assert ids
    report = run_audit(Lake.open(date_src), np.array(ids))
    kinds = {f.kind for f in report.residue}
    assert {"customer_id", "recording_id", "device_id", "email", "phone"} <= kinds
    tables = {f.path.split("/")[0] for f in report.residue}
    assert {"customers", "recordings", "audio", "transcripts", "actions", "usage_daily",
            "devices"} <= tables
    assert report.visible_rows > 0 and report.hidden_rows == 0
    replica = [f for f in report.residue if "/origin=" in f.path and
               f.path.split("/")[1] != "region=" + f.path.split("origin=")[1].split("/")[0]]
    assert replica, "replica copies are audited too"


def test_hidden_copies_are_physical_residue(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    ids = speakers_of_pii(lake)
    customers = next(p for p in sorted((lake / "customers").rglob("*.parquet"))
                     if pl.read_parquet(p)["customer_id"].is_in(ids).any())
    backup = lake / "backup" / "customers-old.parquet"  # an old version nobody references
    backup.parent.mkdir()
    shutil.copyfile(customers, backup)
    (lake / "export.jsonl").write_text(json.dumps({"customer_id": ids[0], "note": "x"}) + "\n")
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    run_scrub(Lake.open(lake), request(ids), "arrow")
    report = run_audit(Lake.open(lake), np.array(ids))
    assert report.visible_rows == 0
    assert report.hidden_rows > 0
    paths = {f.path for f in report.residue}
    assert "export.jsonl" in paths
    backup_kinds = {f.kind for f in report.residue if f.path.startswith("backup/")}
    assert {"customer_id", "email", "phone"} <= backup_kinds


def test_other_customers_are_not_reported(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    run_scrub(Lake.open(lake), request([1, 2]), "arrow")
    report = run_audit(Lake.open(lake), np.array([1, 2]))
    assert report.clean
    assert run_audit(Lake.open(lake), np.array([3])).residue  # 3 was not erased


def test_cli_exit_status(date_src: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "--lake", str(date_src), "--ids", "1",
                                 "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 1, result.output
    assert "RESIDUE FOUND" in result.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["logically_visible_rows"] > 0 and not report["clean"]
    lake = snapshot(date_src, tmp_path / "lake")
    assert runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "1"]).exit_code == 0
    result = runner.invoke(app, ["audit", "--lake", str(lake), "--ids", "1"])
    assert result.exit_code == 0, result.output
    assert "clean" in result.output
