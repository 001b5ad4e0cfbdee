"""Room on the lake's filesystem: a copy-on-write scrub writes each new file beside its old one.

Before a job writes anything it checks that it may write there, and that there is room for the
largest files it may have in flight at once. The disk can still fill during the job (other
writers): the job then stops with every file whole, old or new, to be finished by the same
command once there is room.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline.lake import SCRUB_DIR, Lake, LakeError

SLACK = 16 << 20  # the journal, the keys, the manifest and a receipt: small, bounded
# A format's rewrite of a file can come out larger than the file (another writer's row groups
# and footers): up to 1.056x measured (Iceberg, sf 0.01; `python -m bench.format_growth`,
# README "Table formats")
FORMAT_GROWTH = 1.10




def check_room(lake: Lake, files_in_flight: int) -> None:
    """Refuse a job, before it writes anything, when a filesystem of the lake has less room
    than its `files_in_flight` largest data files there (each new file is written beside its
    old one, and the old one's space is freed by the rename), plus SLACK where the lake's
    root is (its `_scrub/`). Tables may live on other filesystems (symlinked directories)."""
    def needed(held: list[int]) -> int:
        return sum(sorted(held, reverse=True)[:max(1, files_in_flight)])

    _refuse_short(lake.root, _data_files(lake), needed, lambda _: (
        f"a scrub writes each new file beside its old one, and {files_in_flight} file(s) in "
        "flight (--workers) need up to {needed} there: free some space or lower --workers"))


def check_format_room(root: Path, rewritten: list[tuple[Path, int]], format_name: str,
                      holding: str = "the customers' rows") -> None:
    """Refuse a table-format job, before it writes anything, when a filesystem of the lake has
    less room than the data files it will rewrite there (`rewritten`: path, size), plus SLACK
    where the root is. A format rewrites every file holding an erased row and lets go of the
    old files only in its purge, after every table (or at least the table) is rewritten.
    Nothing to rewrite, nothing to check: a purge that only deletes files must run on a full
    disk, which is when it is needed."""
    if not rewritten:
        return
    def why(held: list[int]) -> str:
        if not held:  # the root's filesystem, every rewrite elsewhere
            return "the job's journal and receipt need {needed} there. Free some space"
        return (f"{format_name} rewrites the {len(held):,} data file(s) there that hold "
                f"{holding} and keeps the old ones until its purge ends: up to {{needed}} are "
                "needed there (their size, +10 % for a writer's differences, +16 MB). Free "
                "some space; nothing was written")

    _refuse_short(root, rewritten, lambda held: int(sum(held) * FORMAT_GROWTH), why)


def _refuse_short(root: Path, files: list[tuple[Path, int]],
                  needed: Callable[[list[int]], int],
                  why: Callable[[list[int]], str]) -> None:
    """Raise a LakeError for the first filesystem holding some of `files` whose free room is
    under `needed(their sizes)` plus its slack; `why(sizes)` explains, `{needed}` in it
    standing for the amount."""
    for where, held, slack in _by_filesystem(root, files):
        if not held and not slack:
            continue
        want = (needed(held) if held else 0) + slack
        free = shutil.disk_usage(where).free
        if free < want:
            raise LakeError(f"the filesystem of {where} has {free / 1e6:,.1f} MB free; " +
                            why(held).replace("{needed}", f"{want / 1e6:,.1f} MB"))


def _by_filesystem(root: Path, files: list[tuple[Path, int]]
                   ) -> list[tuple[Path, list[int], int]]:
    """The files' sizes grouped by filesystem: (a directory on it, sizes, slack), the root's
    filesystem always among them with SLACK (the job's `_scrub/`); tables may live on other
    filesystems (symlinked directories)."""
    root_dev = os.stat(root).st_dev
    sizes: dict[int, list[int]] = {root_dev: []}
    where: dict[int, Path] = {root_dev: root}
    devices: dict[Path, int] = {}
    for path, size in files:
        dev = devices.get(path.parent)
        if dev is None:
            dev = devices[path.parent] = os.stat(path.parent).st_dev
        sizes.setdefault(dev, []).append(size)
        where.setdefault(dev, path.parent)
    return [(where[d], held, SLACK if d == root_dev else 0) for d, held in sizes.items()]


def _data_files(lake: Lake) -> list[tuple[Path, int]]:
    """Every data file and its size, without reading footers (a lake without a manifest
    lists its files by reading each one's)."""
    if lake.manifest is not None:
        return [(lake.root / f.path, f.bytes) for t in lake.tables() for f in lake.files(t)]
    return [(p, p.stat().st_size) for t in lake.tables()
            for p in sorted((lake.root / t).rglob("*.parquet"))]


def check_writable(lake: Lake) -> None:
    """Refuse a job, before it writes anything, on a read-only filesystem or when this user
    may not create files in the lake's directories (its own `_scrub/` and each data file's)."""
    if os.statvfs(lake.root).f_flag & os.ST_RDONLY:
        raise LakeError(f"{lake.root} is on a read-only filesystem: a scrub rewrites files "
                        "where they are (--dry-run and `voicescrub audit` only read)")
    dirs = {lake.root} | {path.parent for path, _ in _data_files(lake)}
    if (lake.root / SCRUB_DIR).is_dir():
        dirs.add(lake.root / SCRUB_DIR)
    denied = sorted(d for d in dirs if not os.access(d, os.W_OK | os.X_OK))
    if denied:
        raise LakeError(f"this user may not create files in {len(denied)} of the lake's "
                        f"directories, e.g. {denied[0]}: a scrub writes each new file beside "
                        "its old one")
