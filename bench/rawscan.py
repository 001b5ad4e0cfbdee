"""Micro-benchmark of the audit's raw-byte scan (`pipeline.audit.raw_counts`) on CSV text: what
an export, a log or a member of an archive holds.

    python -m bench.rawscan --lake lakes/sf0.1-date-seed42 --rows 400000

Exports that many transcript rows of the lake as CSV (in memory), takes its first 32 MiB (one
chunk of the scan), and times `raw_counts` with names off and on for 4 customers, then each
token pattern alone (`findall`, as the scan used them before the finders that replaced three
of them). CPU time of this process, one thread; one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.audit import (
    RAW_CHUNK,
    TOKENS,
    email_tokens,
    gather_needles,
    long_ids,
    raw_counts,
    raw_needles,
)
from pipeline.lake import Lake


def cpu_s(fn) -> float:  # noqa: ANN001
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", type=Path, default=Path("lakes/sf0.1-date-seed42"))
    ap.add_argument("--rows", type=int, default=400_000)
    args = ap.parse_args()
    lake = Lake.open(args.lake)
    text = pl.read_parquet(args.lake / "transcripts" / "**" / "*.parquet",
                           hive_partitioning=True).head(args.rows).write_csv().encode()
    data = text[:RAW_CHUNK]
    mb = len(data) / 1e6
    needles = gather_needles(lake, np.array([5, 77, 901, 1234]))
    for names in (False, True):
        raw = raw_needles(needles, names)
        t0 = time.process_time()
        counts = raw_counts(data, raw)
        s = time.process_time() - t0
        print(json.dumps({"raw_counts": {"names": names}, "mb": round(mb, 1),
                          "cpu_s": round(s, 3), "mb_per_s": round(mb / s, 1),
                          "counts": counts}))
    finders = {"long_id (finder)": lambda: long_ids(data),
               "email (finder)": lambda: email_tokens(data)}
    finders |= {f"{k} (pattern)": (lambda r=r: r.findall(data)) for k, r in TOKENS.items()}
    for name, fn in finders.items():
        print(json.dumps({"scan": name, "cpu_s": round(cpu_s(fn), 3)}))


if __name__ == "__main__":
    main()
