"""bench.cpu_account times a real job's steps and leaves the pipeline and the lake as they were."""

from __future__ import annotations

from pathlib import Path

from bench import cpu_account
from pipeline.strategies import base
from tests.pipeline.conftest import lake_digest


def test_steps_are_timed_and_everything_is_put_back(date_src: Path, tmp_path: Path) -> None:
    before = lake_digest(date_src)
    original = base.row_checksum
    out = cpu_account.account_scrub(date_src, [3, 5, 8, 13, 21], "arrow", 2, tmp_path)
    steps = out["steps"]
    rewrites = steps["rewrite a file: task, strategy, checks, commit"]["calls"]
    assert rewrites > 0
    assert steps["open the writer"]["calls"] == rewrites
    assert steps["close the writer, fsync"]["calls"] == rewrites
    assert 0 < steps["row checksum of kept rows"]["calls"] <= steps[
        "write: hand kept rows to the writer"]["calls"]
    # nested steps never exceed what holds them, and nothing exceeds the process total
    assert steps["encode a row group (Parquet writer)"]["cpu_s"] <= steps[
        "write: hand kept rows to the writer"]["cpu_s"] + 1e-3
    assert steps["plan a file (incl. key resolution's mapping tables)"]["cpu_s"] + steps[
        "rewrite a file: task, strategy, checks, commit"]["cpu_s"] <= out["process_cpu_s"] + 0.05
    assert base.row_checksum is original  # the wrappers are gone
    assert lake_digest(date_src) == before
    assert not (tmp_path / "cpu-account-snapshot").exists()
