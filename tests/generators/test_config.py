"""Bad generator arguments: one clear line, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from generators.config import ConfigError, LakeConfig
from pipeline.cli import app

runner = CliRunner()


@pytest.mark.parametrize("kwargs, message", [
    ({"sf": -1}, "--sf must be a positive"),
    ({"sf": 0}, "--sf must be a positive"),
    ({"layout": "hourly"}, "--layout must be one of"),
    ({"regions": ("us-east-1", "mars-1")}, "unknown region 'mars-1'"),
    ({"regions": ()}, "at least one region"),
    ({"regions": ("us-east-1",)}, "--replicas needs at least two regions"),
    ({"days": 0}, "--days must be"),
    ({"audio_bytes": 10}, "--audio-bytes must be"),
    ({"seed": -3}, "--seed must be"),
    ({"layout": "bucket", "buckets": -3}, r"--buckets must be 0 \(sized from --sf\) or"),
    ({"layout": "date", "buckets": 8}, "--buckets 8 is for --layout bucket"),
])
def test_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LakeConfig(**kwargs)


@pytest.mark.parametrize("args, message", [
    (["--sf", "-1"], "--sf must be a positive number"),
    (["--regions", "us-east-1,mars-1"], "unknown region"),
    (["--layout", "nope"], "--layout must be one of"),
    (["--buckets", "8"], "--buckets 8 is for --layout bucket"),
])
def test_cli_bad_arguments_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "lake"
    result = runner.invoke(app, ["generate", "--out", str(out), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not out.exists()


def test_cli_refuses_non_empty_out_without_force(tmp_path: Path) -> None:
    out = tmp_path / "lake"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["generate", "--out", str(out), "--sf", "0.001"])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_generates(tmp_path: Path) -> None:
    out = tmp_path / "lake"
    result = runner.invoke(app, ["generate", "--out", str(out), "--sf", "0.001", "--days", "2",
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "_lake.json").exists()
    assert "rows" in result.output


def test_a_date_lake_that_recorded_buckets_still_opens(tmp_path: Path) -> None:
    """Lakes written before --buckets was refused with the date layout may record some: their
    config is still read (the audit rebuilds the generator's vocabularies from it)."""
    from generators.truth import config_from_manifest

    cfg = LakeConfig(sf=0.001)
    manifest = {"config": {**cfg.to_json(), "buckets": 8}}
    assert config_from_manifest(manifest).n_buckets == cfg.n_buckets
