from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

from pipeline import bloom, dictionary, kernels, plan, rowhash

REPO = Path(__file__).resolve().parents[2]
# a kernel in a fresh process: its line "imported" once the modules are in, "done" once the
# loop has run (loaded from numba's cache, or compiled and saved)
KERNEL = """
import numpy as np
from pipeline.plan import IntKeyIndex
print("imported", flush=True)
assert IntKeyIndex(np.array([5], np.int64)).contains(np.array([4, 5], np.int64)).tolist() \\
    == [False, True]
print("done", flush=True)
"""


def test_every_cached_loop_reads_and_writes_its_cache_under_the_lock() -> None:
    """A loop decorated with numba's own cache=True would write the cache unguarded (where the
    lock lies: the next test, on an empty cache)."""
    cached = [(m.__name__, name, d) for m in (bloom, dictionary, plan, rowhash)
              for name, d in vars(m).items()
              if isinstance(d, CPUDispatcher) and isinstance(d._cache, FunctionCache)]
    assert len(cached) >= 10
    for module, name, d in cached:
        for method in (d._cache.load_overload, d._cache.save_overload):
            assert getattr(method, "__wrapped__", None) is not None, (module, name)


def test_another_process_waits_for_the_lock_to_use_the_cache(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", KERNEL], cwd=REPO, env=os.environ.copy(),
                                stdout=subprocess.PIPE, text=True)

    first = start()  # compiles into the empty cache
    assert first.communicate(timeout=120)[0].split() == ["imported", "done"]
    (index,) = tmp_path.rglob("plan._contains-*.nbi")
    assert (index.parent / kernels.LOCK_NAME).exists()
    with kernels.compile_lock(index.parent):
        second = start()
        assert second.stdout.readline() == "imported\n"
        # the cache's load waits while this process holds the lock: seen as its blocked
        # request in /proc/locks (without the lock it would finish: no wait, however slow)
        lock = index.parent / kernels.LOCK_NAME
        deadline = time.monotonic() + 60
        while not _waits_for_a_flock(second.pid, lock) and second.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waits_for_a_flock(second.pid, lock), f"not waiting ({second.poll()=})"
    assert second.communicate(timeout=60)[0] == "done\n" and second.returncode == 0


def _waits_for_a_flock(pid: int, path: Path) -> bool:
    """`pid` waits to flock() `path`: `N: -> FLOCK ADVISORY WRITE <pid> <maj:min:inode> ...`
    in /proc/locks (Linux)."""
    inode = str(path.stat().st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if parts[1:3] == ["->", "FLOCK"] and len(parts) > 6 and parts[5] == str(pid) \
                and parts[6].rsplit(":", 1)[-1] == inode:
            return True
    return False
