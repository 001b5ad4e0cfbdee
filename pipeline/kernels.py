"""numba's compiled loops: its on-disk cache read and written by one process at a time.

numba's cache is not safe for two processes saving entries of one function at once: `save`
reads the index, picks the next free data file name and writes both, so two processes that
compile two signatures together can both pick `.2.nbc`, and the index left behind names the
other's machine code for a signature (numba/numba#10128, #9348). A fresh install compiles each
loop on first use, and new column types compile later; two voicescrub processes started
together (a scrub and an audit, two scrubs of two lakes) would do just that.

`cached_njit` is `numba.njit(nogil=True, cache=True)` whose cache loads and saves take an
exclusive file lock in the directory numba chose for the cache. numba calls them under its own
in-process compiler lock, so the order of the two locks is always the same (and neither
compiles anything, so the file lock is never asked for twice). `ready()` loads (or compiles)
the loops for the common types; `make setup` runs it once (`python -m pipeline.kernels`) so
that an installed checkout starts with a full cache.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAME = "voicescrub-compile.lock"


@contextmanager
def compile_lock(cache_dir: Path) -> Iterator[None]:
    """An exclusive lock in the directory numba caches in, shared by every process using that
    cache. Where it cannot be made, numba cannot save there either: no lock."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _locked(method: Callable[..., Any], cache_dir: Path) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with compile_lock(cache_dir):
            return method(*args, **kwargs)
    return call


def cached_njit(fn: Callable[..., Any]) -> Any:
    """`numba.njit(nogil=True, cache=True)`, its cache read and written under compile_lock()
    in the directory numba chose for it (its FunctionCache is numba's private API: numba is
    pinned in requirements.lock)."""
    import numba

    dispatcher = numba.njit(nogil=True, cache=True)(fn)
    cache = dispatcher._cache
    cache_dir = Path(cache.cache_path)
    cache.load_overload = _locked(cache.load_overload, cache_dir)
    cache.save_overload = _locked(cache.save_overload, cache_dir)
    return dispatcher


def ready() -> None:
    """Every compiled loop of the scrub and the audit, for the common types, loaded in this
    process: from the cache, or compiled and saved."""
    from pipeline import dictionary, plan, rowhash

    rowhash.warm_up()
    plan.warm_up()
    dictionary.warm_up()


def main() -> None:
    t0 = time.perf_counter()
    ready()
    print(f"numba loops compiled or loaded from the cache in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
