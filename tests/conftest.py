"""Test order: the longest files first, so that with one file per worker (`make test`, which
keeps this order: --no-loadscope-reorder) the longest one does not start last and hold up the
run's end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Each pytest-xdist worker keeps numba's compiled kernels in its own cache: numba's on-disk
# cache is not safe for two processes saving entries of one function at once (a fresh clone's
# first run compiles everything). Set before any test module imports numba.
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("NUMBA_CACHE_DIR", str(
        Path(__file__).resolve().parents[1] / ".pytest_cache" / "numba" / _worker))

# Measured with `pytest --durations=0` (serial, seconds): formats 355, faults 134, scrub 93.
LONGEST_FIRST = ("pipeline/test_formats.py", "pipeline/test_faults.py", "pipeline/test_scrub.py")


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, f in enumerate(LONGEST_FIRST) if path.endswith(f)),
                len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within a file and among the others is kept

