"""Format lakes for the benchmark: converted once per (sf, layout, format), restored per run.

Iceberg's metadata holds absolute paths (its catalog, manifest lists, manifests), so a format
lake is only valid where it was converted. Each one is converted at its run path (`work`) and
kept as a pristine copy under lakes/ (hard links for Parquet files, which no format ever
rewrites in place; real copies for everything else: catalogs and logs do change in place).
A run restores the pristine copy to the run path.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.harness import Settings, lake_path

PRISTINE_MARK = "_bench_pristine.json"


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)

    def copy(a: str, b: str) -> None:
        if a.endswith(".parquet"):
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=copy)


def pristine_path(s: Settings, sf: float, layout: str, fmt: str) -> Path:
    return Path(f"{lake_path(s, sf, layout)}.{fmt}")


def ensure_format_lake(s: Settings, sf: float, layout: str, fmt: str, work: Path) -> dict:
    """The pristine format lake for a run at `work` (converted if missing or made for another
    path); returns its conversion record (seconds, bytes)."""
    from pipeline.formats.convert import convert
    from pipeline.lake import Lake

    pristine = pristine_path(s, sf, layout, fmt)
    mark = pristine / PRISTINE_MARK
    source = lake_path(s, sf, layout)
    # the source lake's identity: a regenerated source must be converted again
    made = json.loads((source / "_lake.json").read_text())
    source_id = [made["generator_version"], made["generation_seconds"]]
    if mark.exists():
        rec = json.loads(mark.read_text())
        if rec.get("work") == str(work) and rec.get("source") == source_id:
            return rec
    print(f"converting {source} to {fmt}…", file=sys.stderr, flush=True)
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    flake = convert(Lake.open(source), fmt, work)
    seconds = time.perf_counter() - t0
    rec = {"work": str(work), "source": source_id, "format": fmt, "convert_s": seconds,
           "bytes": sum(p.stat().st_size for p in work.rglob("*") if p.is_file()),
           "rows": sum(t["rows_stored"] for t in flake.manifest["tables"].values())}
    _copy(work, pristine)
    mark.write_text(json.dumps(rec))
    return rec


def restore(s: Settings, sf: float, layout: str, fmt: str, work: Path) -> Path:
    """The run path holding a fresh copy of the pristine format lake."""
    pristine = pristine_path(s, sf, layout, fmt)
    _copy(pristine, work)
    (work / PRISTINE_MARK).unlink(missing_ok=True)
    return work
