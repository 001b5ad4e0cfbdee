"""The physical floors a scrub is measured against, on the very files the scrub touches.

- scan floor: read the key columns of every file of the lineage (what any plan must at least
  read when statistics cannot prune);
- codec floor: re-encode each touched file with its own writer settings and no filter, written
  as durably as a strategy writes: beside the source, fsynced, kept, and the directories synced
  once at the end (the strategy's own `make_durable`);
- I/O floor: copy each touched file byte for byte, just as durably.

A strategy's new files stay (they replace the old ones), so a floor's outputs stay too until its
round is over: deleting them inside the timed region would hand the floor the page cache and
blocks they held. The benchmark removes them with the snapshot, untimed; `remove_outputs` does it
for a direct caller.

Each floor runs on the same thread pool size as the strategies, and reads as they do: files
opened with `open_parquet`, one thread per file (threads within a read made the codec floor
slower: 15.6–16.0 against 14.6–15.2 s, alternating runs on the same files).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from generators.writer import open_writer
from pipeline.commit import make_durable
from pipeline.lake import Lake, fsync_path, open_parquet

SUFFIXES = (".codec-floor.tmp", ".io-floor.tmp")


def _pool(fn: Callable[[str], int], paths: list[str], workers: int) -> int:
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return sum(pool.map(fn, paths))


def scan_floor(lake: Lake, workers: int) -> dict:
    """Read the key column(s) of every file of every table the lineage names."""
    jobs = []
    for table in lake.tables():
        cols = sorted({r.column for r in lake.lineage.rules_for(table)})
        jobs += [(f.path, cols) for f in lake.files(table)]

    def one(job: tuple[str, list[str]]) -> int:
        path, cols = job
        pf = open_parquet(lake.root / path)
        rows = 0
        for i in range(pf.metadata.num_row_groups):
            rows += pf.read_row_group(i, columns=cols, use_threads=False).num_rows
        return rows

    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = sum(pool.map(one, jobs))
    return {"files": len(jobs), "rows": rows}


def codec_floor(lake: Lake, paths: list[str], workers: int) -> dict:
    """Decode and re-encode each file with its writer settings, no filter, fsync."""
    tables = {f.path: f.table for t in lake.tables() for f in lake.files(t)}

    def one(rel: str) -> int:
        src = lake.root / rel
        dst = src.with_name(f".{src.name}.codec-floor.tmp")
        settings = lake.writer_settings(tables[rel], src)
        pf = open_parquet(src)
        writer = open_writer(dst, pf.schema_arrow, settings)
        try:
            for i in range(pf.metadata.num_row_groups):
                writer.write_table(pf.read_row_group(i, use_threads=False),
                                   row_group_size=settings.get("row_group_rows") or 65536)
        finally:
            writer.close()
        fsync_path(dst)
        return dst.stat().st_size

    written = _pool(one, paths, workers)
    make_durable(lake.root, paths)
    return {"files": len(paths), "bytes_written": written}


def io_floor(lake: Lake, paths: list[str], workers: int) -> dict:
    """Copy each file byte for byte, fsync; directories synced at the end."""

    def one(rel: str) -> int:
        src = lake.root / rel
        dst = src.with_name(f".{src.name}.io-floor.tmp")
        shutil.copyfile(src, dst)
        fsync_path(dst)
        return dst.stat().st_size

    written = _pool(one, paths, workers)
    make_durable(lake.root, paths)
    return {"files": len(paths), "bytes_written": written}


def remove_outputs(lake: Lake, paths: list[str]) -> int:
    """Delete what the codec and I/O floors left beside `paths`; returns how many."""
    n = 0
    for rel in paths:
        src = lake.root / rel
        for suffix in SUFFIXES:
            out = src.with_name(f".{src.name}{suffix}")
            if out.exists():
                out.unlink()
                n += 1
    return n


FLOORS = {"scan": scan_floor, "codec": codec_floor, "io": io_floor}
