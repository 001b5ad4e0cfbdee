"""bench.format_growth: the figures behind pipeline.room.FORMAT_GROWTH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.format_growth import measure
from pipeline.formats.convert import convert
from pipeline.lake import Lake


@pytest.mark.parametrize("fmt", ["delta", "ducklake"])
def test_growth_compares_the_rewritten_files_with_the_counted_ones(
        fmt: str, format_src: Path, tmp_path: Path) -> None:
    root = convert(Lake.open(format_src), fmt, tmp_path / fmt).root
    out = measure(root, np.array([3, 4, 5], np.int64))
    assert out["format"] == fmt and out["files_counted"] > 3
    assert out["files_written"] > 0 and out["bytes_written"] > 0
    assert out["ratio"] == round(out["bytes_written"] / out["bytes_counted"], 4)
    assert 0.5 < out["ratio"] < 1.10  # under the margin the room check adds
