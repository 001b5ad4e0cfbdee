"""Commit: a rewritten file is checked, journaled, and swapped in by an atomic rename.

At every instant the path holds either the old file or the new one, never half of one: the new
file is complete and fsynced before the rename, and the directory is fsynced after it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.faults import crashpoint
from pipeline.journal import Journal
from pipeline.lake import fsync_dir, open_parquet
from pipeline.plan import FilePlan
from pipeline.rowhash import row_checksum
from pipeline.strategies.base import RewriteResult, RewriteTask, erase_mask


class CommitError(RuntimeError):
    """A rewritten file failed its checks: it is deleted and the source stays in place."""


def check_rewrite(fp: FilePlan, task: RewriteTask, result: RewriteResult, deep: bool) -> None:
    """The new file holds exactly the rows the plan expects, and none of the keys."""
    footer_rows = open_parquet(task.dst).metadata.num_rows
    st = task.dst.stat()
    result.checked_as = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    problems = []
    if footer_rows != fp.rows_kept:
        problems.append(f"footer has {footer_rows} rows, plan expects {fp.rows_kept}")
    if result.rows_kept != fp.rows_kept:
        problems.append(f"strategy kept {result.rows_kept} rows, plan expects {fp.rows_kept}")
    if result.rows_erased != fp.rows_matched:
        problems.append(f"strategy erased {result.rows_erased}, plan found {fp.rows_matched}")
    if result.keys_left:
        problems.append(f"{result.keys_left} rows still hold a key")
    if result.erased_without_key:
        problems.append(f"{result.erased_without_key} erased rows hold no key")
    if deep and not problems:
        problems += _deep_check(task, result)
    if problems:
        task.dst.unlink(missing_ok=True)
        raise CommitError(f"{fp.file.path}: " + "; ".join(problems))


def _deep_check(task: RewriteTask, result: RewriteResult) -> list[str]:
    """Re-read the new file, and independently filter the source with PyArrow: the kept rows'
    checksums must agree three ways (streamed, re-read, recomputed from the source)."""
    written = pq.read_table(task.dst)
    source = pq.read_table(task.src)
    expected = source.filter(pc.invert(erase_mask(source, task)))
    got, want = row_checksum(written), row_checksum(expected)
    problems = []
    if got != result.checksum_kept:
        problems.append("re-read checksum differs from the streamed one")
    if got != want:
        problems.append("kept rows differ from the source's rows minus the erased ones")
    if not written.schema.equals(task.schema):
        problems.append("schema differs from the source's")
    return problems


def commit_rewrite(root: Path, fp: FilePlan, task: RewriteTask, result: RewriteResult,
                   journal: Journal) -> None:
    """Swap the (complete, fsynced) new file in. The directory entry is made durable later,
    once for the whole job (`make_durable`): until then a crash may bring the old file back,
    which a resume detects by its row count and rewrites again."""
    target = root / fp.file.path
    os.replace(task.dst, target)
    crashpoint("after_rename")
    st = target.stat()
    # the renamed file is the checked one (a rename keeps device, inode, size and mtime)
    same = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == result.checked_as
    result.committed_as = file_identity(st) if same else None
    journal.log({"path": fp.file.path, "state": "committed", "rows": fp.rows_kept,
                 "bytes": st.st_size, "checksum": result.checksum_kept})


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """What ties a path to the file checked before its rename: a rename keeps the device and
    inode; a later write changes the size or mtime, and any change to the inode (a write, a
    utime that puts an mtime back) moves the ctime, which no caller can set."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def make_durable(root: Path, paths: list[str]) -> None:
    """Persist the renames: fsync each touched directory. (Not `sync()`, which would also flush
    every other process's dirty data on the machine: on ext4 the first directory fsync commits
    the journal holding all the renames, and the rest find nothing left to do.)"""
    for d in sorted({(root / p).parent for p in paths}):
        fsync_dir(d)


def settle(root: Path, path: str, expected_rows: int, journal: Journal) -> bool:
    """On resume, tell a file already rewritten (its row count is the planned one: a rewrite
    always drops at least one row) from one still to do. Temp files are never trusted."""
    target = root / path
    journal.temp_path(target).unlink(missing_ok=True)
    if open_parquet(target).metadata.num_rows != expected_rows:
        return False
    journal.log({"path": path, "state": "committed", "rows": expected_rows,
                 "bytes": target.stat().st_size, "checksum": None})
    return True
