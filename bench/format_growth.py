"""How much larger a table format writes the files it rewrites than the files the room check
counted (pipeline.room.FORMAT_GROWTH is set from this). Scrubs the format lake it is given:
pass a throwaway converted copy.

    python -m bench.format_growth --lake L --ids 1,21,41
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

from pipeline.format_scrub import (
    files_holding_keys,
    files_to_purge,
    resolve_format_keys,
    run_format_scrub,
    run_purge,
)
from pipeline.formats import FormatLake, get
from pipeline.intake import ErasureRequest, parse_ids


def live_sizes(flake: FormatLake, fmt) -> dict[Path, int]:  # noqa: ANN001
    return {Path(p): Path(p).stat().st_size for t in flake.tables()
            for p in fmt.data_files(flake, t)}


def measure(root: Path, ids: np.ndarray) -> dict:
    """Counted bytes (what the room check sums) against the new data files' bytes, for the
    step that rewrites: the DELETE (Delta, Iceberg) or the purge (DuckLake)."""
    flake = FormatLake.open(root)
    fmt = get(flake.format)
    request = ErasureRequest(ids, dt.datetime.now(dt.UTC), "format_growth", 0)
    try:
        counted = files_holding_keys(flake, fmt, resolve_format_keys(flake, fmt, ids))
        before = live_sizes(flake, fmt)
        run_format_scrub(flake, request, flake.format, logical_only=True)
        if not fmt.delete_rewrites:
            counted = files_to_purge(flake, fmt)
            before = live_sizes(flake, fmt)
            run_purge(flake, flake.format)
        new = {p: s for p, s in live_sizes(flake, fmt).items() if p not in before}
    finally:
        fmt.release(flake)
    counted_bytes = sum(s for _, s in counted)
    return {"format": flake.format, "files_counted": len(counted),
            "bytes_counted": counted_bytes, "files_written": len(new),
            "bytes_written": sum(new.values()),
            "ratio": round(sum(new.values()) / counted_bytes, 4) if counted_bytes else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", type=Path, required=True, help="a throwaway format lake")
    ap.add_argument("--ids", required=True, help="customer ids, comma-separated")
    args = ap.parse_args()
    print(json.dumps(measure(args.lake, parse_ids(args.ids).ids)))


if __name__ == "__main__":
    main()
