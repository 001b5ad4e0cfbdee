"""bench.ab runs the same job with each checkout's code, alternating, on fresh snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ab
from bench.harness import REPO
from tests.pipeline.conftest import lake_digest


def test_two_variants_alternate_and_leave_the_lake_untouched(date_src: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    before = lake_digest(date_src)
    runs = ab.main([f"a={REPO}", f"b={REPO}:VOICESCRUB_AB_PROBE=1", "--lake", str(date_src),
                    "--batch", "5", "--rounds", "2", "--workers", "2",
                    "--work-dir", str(tmp_path)])
    assert [(r["round"], r["variant"]) for r in runs] == [(0, "a"), (0, "b"), (1, "a"),
                                                          (1, "b")]
    assert all(r["wall_s"] > 0 and r["timings_s"]["total"] > 0 for r in runs)
    assert "round by round ÷ a" in capsys.readouterr().out
    assert lake_digest(date_src) == before  # every run scrubbed its own snapshot
    assert not (tmp_path / "ab-snapshot").exists()


def test_a_variant_must_be_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a voicescrub checkout"):
        ab.parse_variant(f"x={tmp_path}")
    with pytest.raises(SystemExit, match="NAME=CHECKOUT"):
        ab.parse_variant(str(tmp_path))
