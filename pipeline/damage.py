"""Data files that cannot be read: told apart from other failures, and reported by path.

A Parquet file can be damaged on disk (a flipped block, a bad sector, a copy cut short but
padded) while its size still matches the manifest. No scrub can erase rows from a file it
cannot read, and none may drop the file's other rows, so such a file is left as it is and
named, with what the reader said, to be restored (from a backup or the replica region's copy).

When planning or rewriting a file fails, the file is read in full, every column of every row
group, with pyarrow: if that fails too, the failure is the file's (UnreadableFile); if it reads,
the failure was the job's own and is raised as it was. One exception: an engine whose own reader
refuses the source (EngineRefused: DuckDB's or Polars' Parquet reader is stricter than pyarrow's
about some page headers) cannot scrub that file either, so it is named too, as one that the arrow
strategy may scrub.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from generators.lake import disk_full
from pipeline.lake import LakeError

SHOWN = 10  # files named in a message; the rest are counted


class UnreadableFile(Exception):
    """One data file could not be read (see the module doc)."""

    def __init__(self, path: str, cause: str, engine: str | None = None) -> None:
        super().__init__(f"{path}: {cause}")
        self.path, self.cause = path, cause
        self.engine = engine  # set when only this engine refuses it (pyarrow reads it)


class EngineRefused(Exception):
    """A strategy's engine failed reading its source file (raised by `engine_batches`)."""

    def __init__(self, engine: str, message: str) -> None:
        super().__init__(f"{engine} cannot read it: {message}")
        self.engine, self.message = engine, message


class UnreadableFiles(LakeError):
    """Data files that could not be read. `job`: the scrub job left unfinished by them (None
    when they were found before anything was changed); `committed`: how many files that job
    had rewritten by then."""

    def __init__(self, files: list[UnreadableFile], committed: int, job: str | None = None
                 ) -> None:
        self.files, self.committed = sorted(files, key=lambda f: f.path), committed
        self.job = job  # the unfinished job, or None: nothing was changed
        lines = [f"{len(files)} data file(s) cannot be read, so rows in them cannot be erased:"]
        lines += [f"  {f.path}: {f.cause}" for f in self.files[:SHOWN]]
        if len(files) > SHOWN:
            lines.append(f"  … and {len(files) - SHOWN} more")
        damaged = [f for f in self.files if f.engine is None]
        if job is None:
            lines.append("Nothing was changed.")
        else:
            lines.append(f"The job ({job}) stopped unfinished after rewriting {committed:,} "
                         "other file(s), each complete.")
        rerun, finish = (("run the command again", "") if job is None
                         else ("re-run the same command", " to finish it"))
        if damaged:
            lines.append(f"Restore {'these' if len(damaged) == len(files) else 'the damaged'} "
                         f"files (from a backup, or the replica region's copy) and "
                         f"{rerun}{finish}.")
        engines = sorted({f.engine for f in self.files if f.engine is not None})
        if engines:
            which = "these files" if not damaged else "the files marked so"
            lines.append(f"{' and '.join(engines)} refused {which}, which pyarrow reads in "
                         f"full: {rerun} with `--strategy arrow`{finish} (the job is the "
                         "customers', whatever the strategy).")
        super().__init__("\n".join(lines))


# Failures of the machine, not of a file: no file is to blame, so none is named (a full disk
# among them: see pipeline.room).
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
                      errno.EAGAIN, errno.EINTR}


def environmental(exc: BaseException) -> bool:
    """Out of memory, of file descriptors, of room: the job's surroundings, not a file."""
    return isinstance(exc, MemoryError | pa.ArrowMemoryError) or (
        isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS)


# How the machine's failures read in an engine's message (DuckDB and Polars raise their own
# exception types, without an errno).
_ENGINE_ENVIRONMENT = ("out of memory", "outofmemory", "cannot allocate memory",
                       "too many open files", "resource temporarily unavailable",
                       "interrupted system call")


def engine_failure(engine: str, exc: BaseException) -> BaseException:
    """What an engine's reader raised, as the scrub should see it: EngineRefused, unless the
    machine is to blame (out of memory, of file descriptors, of room), or the user stopped it."""
    text = f"{type(exc).__name__} {exc}".lower()
    if (isinstance(exc, KeyboardInterrupt | SystemExit) or environmental(exc)
            or disk_full(exc) or any(s in text for s in _ENGINE_ENVIRONMENT)):
        return exc
    return EngineRefused(engine, f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def read_failure(path: Path) -> str | None:
    """What reading the whole file raises ("Type: message"), or None when it reads: every
    column of every row group, checked in full (string columns' UTF-8 included, which the
    DuckDB and Polars readers reject and pyarrow's decoder alone does not). Errors of the
    machine (see `environmental`) are raised, not returned."""
    try:
        pf = pq.ParquetFile(str(path), page_checksum_verification=True)
        try:
            for i in range(pf.metadata.num_row_groups):
                pf.read_row_group(i, use_threads=False).validate(full=True)
        finally:
            pf.close()
    except Exception as e:  # noqa: BLE001 (any reader error is the file's, unless ...)
        if environmental(e):
            raise
        return f"{type(e).__name__}: {' '.join(str(e).split())}"
    return None


def as_damage(exc: BaseException, root: Path, path: str) -> BaseException:
    """`exc`, raised while planning or rewriting the data file at `path`: an UnreadableFile
    when the file itself cannot be read, else `exc` (with a note naming the file, unless the
    machine is to blame: see `environmental`)."""
    if isinstance(exc, UnreadableFile) or environmental(exc):
        return exc
    try:
        cause = read_failure(root / path)
    except Exception:  # noqa: BLE001 (the machine failed the check too: not the file's)
        return exc
    if cause is not None:
        return UnreadableFile(path, cause)
    if isinstance(exc, EngineRefused):
        return UnreadableFile(path, f"{exc.engine} cannot read it ({exc.message}), though "
                              "pyarrow reads it in full", engine=exc.engine)
    exc.add_note(f"(while scrubbing {path}, which reads without error)")
    return exc
