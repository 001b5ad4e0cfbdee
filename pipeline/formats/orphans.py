"""Data files a failed write left behind: removed at once, so the re-run finds the room.

A format writes a DELETE's (or a purge's) new Parquet files before it commits them. If the
write fails (a full disk, Ctrl-C), the table stays at its last committed version and the new
files are orphans: nothing reads them, yet they hold the room the re-run needs. Right after the
failure, every Parquet file under the table's directory that was not there before and that the
table does not read is removed. delta-rs and pyarrow's writer threads can still land files
after the error reached Python, so the sweep repeats until a pass finds none. A format's
metadata directories are never swept (Delta's checkpoints are Parquet files the table cannot
open without); its metadata files (Iceberg manifests, a metadata file whose catalog commit
failed) are small and left to `purge`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pipeline.formats.base import FormatLake, TableFormat


def _parquet_under(root: Path | None, skip: tuple[str, ...]) -> set[Path]:
    """Parquet files under `root`, none inside a directory named in `skip` (a format's own
    metadata: Delta's checkpoints are Parquet files the table needs, yet read no rows)."""
    if root is None or not root.is_dir():
        return set()
    return {p.resolve() for p in root.rglob("*.parquet")
            if p.is_file() and not _in_skipped_dir(p.relative_to(root), skip)}


def _in_skipped_dir(rel: Path, skip: tuple[str, ...]) -> bool:
    return any(part in skip for part in rel.parts[:-1])


@contextmanager
def orphans_removed_on_failure(flake: FormatLake, fmt: TableFormat, table: str,
                               tries: int = 8, pause: float = 0.25) -> Iterator[None]:
    root = fmt.table_dir(flake, table)
    before = _parquet_under(root, fmt.metadata_dirs)
    try:
        yield
    except BaseException as e:
        removed = remove_orphans(flake, fmt, table, root, before, tries, pause)
        with suppress(AttributeError, TypeError):  # an exception type without attributes
            e.orphans_removed = removed  # what the failure's message may say was cleaned up
        raise


def remove_orphans(flake: FormatLake, fmt: TableFormat, table: str, root: Path | None,
                   before: set[Path], tries: int = 8, pause: float = 0.25) -> int:
    """Remove new Parquet files under `root` that the table does not read; returns how many.
    Nothing is removed unless the table's live files can be listed (a file a commit made live
    must never go)."""
    removed = 0
    for attempt in range(tries):
        try:
            live = {Path(f).resolve() for f in fmt.live_files(flake, table)}
        except Exception:  # noqa: BLE001 (the table cannot say what it reads: touch nothing)
            return removed
        orphans = _parquet_under(root, fmt.metadata_dirs) - before - live
        for p in orphans:
            p.unlink(missing_ok=True)
        removed += len(orphans)
        if not orphans and attempt:
            break
        time.sleep(pause)
    return removed
