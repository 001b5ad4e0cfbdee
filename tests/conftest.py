"""Test order: the longest files first, so that with one file per worker (`make test`, which
keeps this order: --no-loadscope-reorder) the longest one does not start last and hold up the
run's end."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

# A shell starts a background job (`make test &`) with SIGINT ignored, and its children inherit
# that: a child then never sees the Ctrl-C the tests send it. Python's own handler is reset to
# the default in a child it starts, so the tests' children get Ctrl-C as a user's would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The tests' files go to memory when it has room: the suite holds ~1.2 GB at its peak, and
# on this machine's ext4 disk it took 30-45 s longer, with ~40 s more system time (5.0-5.4
# against 5.7-5.9 min, `make test` and its pytest command, 2026-11-28). The scrub's
# file operations are the same on tmpfs (rename, hard links, fsync, flock); a full disk is
# simulated in the tests that need one. VOICESCRUB_TEST_TMP names another directory, and an
# explicit TMPDIR or --basetemp is kept.
SHM = Path("/dev/shm")
SHM_ROOM = 4 << 30


def _test_temp_root() -> str | None:
    chosen = os.environ.get("VOICESCRUB_TEST_TMP")
    if chosen:
        return chosen
    if "TMPDIR" in os.environ or not SHM.is_dir() or not os.access(SHM, os.W_OK):
        return None
    return str(SHM) if shutil.disk_usage(SHM).free >= SHM_ROOM else None


# read by pytest when it makes the run's base directory, after the conftest files load
if "PYTEST_DEBUG_TEMPROOT" not in os.environ and (_root := _test_temp_root()):
    os.environ["PYTEST_DEBUG_TEMPROOT"] = _root

# The workers share numba's cache (`make setup` filled it): its loads and saves take a lock
# (pipeline/kernels.py), so two workers compiling at once cannot corrupt it.

# Measured with `make test` and --junitxml (seconds per file, two workers, 386311b): formats
# 172, format failures 115, faults 67, scrub 60; every other file under 35.
LONGEST_FIRST = ("pipeline/test_formats.py", "pipeline/test_format_failures.py",
                 "pipeline/test_faults.py", "pipeline/test_scrub.py")


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    return next((i for i, f in enumerate(LONGEST_FIRST) if path.endswith(f)),
                len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within a file and among the others is kept

