"""Where the audit unpacks what it opens, and how it stops.

An archive member or a decompressed stream is copied to a temporary file before it is opened
(a zip, a Parquet or a DuckDB file needs a seekable file). Those copies hold what the audit is
looking for: an erased customer's export, possibly. So they live in one private directory per
audit (mode 0700, `voicescrub-audit-<pid>-…` in the system's temp directory, or in
`VOICESCRUB_AUDIT_TMPDIR`), which is removed when the audit ends, however it ends: finished,
failed, interrupted (Ctrl-C, SIGTERM: the workers stop at their next read). A killed audit
(SIGKILL, a crash) cannot remove its own; the next audit removes every such directory whose
audit is gone. An audit holds a lock (flock) on its directory's `.lock` for as long as it runs
and the kernel drops it when the process ends, however it ends: a directory whose lock can be
taken is stale. That holds across PID namespaces (containers sharing a temp directory), where
a process id says nothing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "voicescrub-audit-"
LOCK = ".lock"
FRESH_S = 60  # a directory younger than this is never judged stale


class AuditCancelled(BaseException):
    """The audit was interrupted; raised in the workers at their next read (a BaseException,
    as KeyboardInterrupt: no `except Exception` that lists a damaged member takes it)."""


class UnpackError(ValueError):
    """The unpack directory's parent cannot be used (a clear message, before any file is read)."""


@dataclass
class UnpackArea:
    """One audit's private directory and its stop signal. The worker threads of that audit
    bind it (`bind`) before each file, so two audits in one process keep theirs apart."""

    path: Path
    cancelled: threading.Event = field(default_factory=threading.Event)


_bound = threading.local()


def tmp_parent() -> Path:
    return Path(os.environ.get("VOICESCRUB_AUDIT_TMPDIR") or tempfile.gettempdir())


def bind(area: UnpackArea | None) -> None:
    """Make `area` the calling thread's (the audit whose file it reads next)."""
    _bound.area = area


def current_dir() -> Path | None:
    """The calling thread's audit's unpack directory (None outside an audit: the system's
    temp directory)."""
    area = getattr(_bound, "area", None)
    return area.path if area is not None else None


def check_cancelled() -> None:
    area = getattr(_bound, "area", None)
    if area is not None and area.cancelled.is_set():
        raise AuditCancelled("the audit was interrupted")


@contextmanager
def unpack_dir() -> Iterator[UnpackArea]:
    """A private directory for one audit's copies, removed when it ends; stale ones of killed
    audits are removed first."""
    parent = tmp_parent()
    if not parent.is_dir():
        raise UnpackError(f"the audit's temporary directory {parent} does not exist "
                          f"(VOICESCRUB_AUDIT_TMPDIR)")
    remove_stale(parent)
    try:
        d = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))  # mode 0700
    except OSError as e:
        raise UnpackError(f"cannot create the audit's temporary directory in {parent}: "
                          f"{e.strerror}") from e
    lock = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until this process ends
        try:
            yield UnpackArea(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    finally:
        os.close(lock)


def remove_stale(parent: Path) -> list[Path]:
    """Remove the unpack directories of audits that are gone; returns them."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(PREFIX) or p.is_symlink() or not p.is_dir():
            continue
        try:
            st = p.stat()
            if st.st_uid != os.getuid():
                continue  # another user's: not ours to judge (and not ours to remove)
            if time.time() - st.st_mtime < FRESH_S:
                continue  # just made: its audit may not hold its lock yet
            lock = os.open(p / LOCK, os.O_RDWR)
        except OSError:
            continue  # no lock file: being created this instant (or not an audit's)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: that audit is running
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        finally:
            os.close(lock)
    return removed
