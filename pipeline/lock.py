"""One writer at a time: a job that changes a lake holds an exclusive lock on its root.

Two scrubs of one lake at once would each plan files the other is rewriting, and the second
commit would fail its checks (or one job's manifest update would be lost), leaving a lake that
no longer matches its manifest. The lock is `flock` on the root directory itself, so taking it
writes nothing (a refused job leaves the lake byte-identical) and the kernel releases it when
the holder exits, however it ends: a killed job never leaves a stale lock, and re-running it
resumes at once.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.lake import LakeError


class LakeBusyError(LakeError):
    """Another job holds the lake."""


@contextmanager
def lake_lock(root: Path, what: str = "scrub") -> Iterator[None]:
    """Hold the lake for the duration of a job; refuse at once if another job holds it."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise LakeError(f"lake {root} does not exist") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LakeBusyError(
                    f"another job (a scrub or purge) is running on {root}: run this {what} "
                    "when it has finished") from None
            raise
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
