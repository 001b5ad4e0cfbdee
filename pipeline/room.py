"""Room on the lake's filesystem: a copy-on-write scrub writes each new file beside its old one.

Before a job writes anything it checks there is room for the largest files it may have in
flight at once; the disk can still fill during the job (other writers), and then the job stops
with every file whole, old or new, to be finished by the same command once there is room.
"""

from __future__ import annotations

import errno
import shutil

from pipeline.lake import Lake, LakeError

SLACK = 16 << 20  # the journal, the keys, the manifest and a receipt: small, bounded


def out_of_room(exc: BaseException) -> bool:
    """The filesystem is full (or the user's quota is): the job's surroundings, not a file."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def check_room(lake: Lake, files_in_flight: int) -> None:
    """Refuse a job, before it writes anything, when the lake's filesystem has less room than
    its `files_in_flight` largest data files (each new file is written beside its old one, and
    the old one's space is freed by the rename) plus SLACK."""
    sizes = sorted((f.bytes for t in lake.tables() for f in lake.files(t)), reverse=True)
    needed = sum(sizes[:max(1, files_in_flight)]) + SLACK
    free = shutil.disk_usage(lake.root).free
    if free < needed:
        raise LakeError(
            f"the lake's filesystem has {free / 1e6:,.1f} MB free; a scrub writes each new "
            f"file beside its old one, and {files_in_flight} file(s) in flight (--workers) "
            f"need up to {needed / 1e6:,.1f} MB: free some space or lower --workers")
