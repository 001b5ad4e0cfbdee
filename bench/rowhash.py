"""Micro-benchmark of the row checksum: CPU time per row of `pipeline.rowhash` against the
method it replaced (Polars: `from_arrow` then `hash_rows`), on the same files of a lake.

    python -m bench.rowhash --lake lakes/sf1-date-seed42 --files 12

Each table's files are read once; both methods then hash the same in-memory tables, one after
the other, on one thread of this process (Polars may use its own pool: process CPU time counts
it). Prints one JSON line per table and a total.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline.lake import Lake
from pipeline.rowhash import row_checksum


def polars_checksum(table) -> int:  # noqa: ANN001
    return int(pl.from_arrow(table).hash_rows(seed=0x5EED).sum())


def cpu_ns_per_row(fn, tables: list, rows: int) -> float:  # noqa: ANN001
    fn(tables[0].slice(0, 10))  # compile / warm up outside the timing
    t0 = time.process_time()
    for t in tables:
        fn(t)
    return (time.process_time() - t0) / rows * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", type=Path, default=Path("lakes/sf1-date-seed42"))
    ap.add_argument("--files", type=int, default=12, help="files sampled per table")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    lake = Lake.open(args.lake)
    rnd = random.Random(args.seed)
    totals = {"rows": 0, "rowhash": 0.0, "polars": 0.0}
    for table in lake.tables():
        files = lake.files(table)
        picked = rnd.sample(files, min(args.files, len(files)))
        tables = [pq.read_table(lake.root / f.path) for f in picked]
        rows = sum(t.num_rows for t in tables)
        if not rows:
            continue
        new = cpu_ns_per_row(row_checksum, tables, rows)
        old = cpu_ns_per_row(polars_checksum, tables, rows)
        totals["rows"] += rows
        totals["rowhash"] += new * rows
        totals["polars"] += old * rows
        print(json.dumps({"table": table, "files": len(tables), "rows": rows,
                          "rowhash_ns_per_row": round(new, 1),
                          "polars_ns_per_row": round(old, 1)}))
    n = max(totals["rows"], 1)
    print(json.dumps({"table": "all", "rows": totals["rows"],
                      "rowhash_ns_per_row": round(totals["rowhash"] / n, 1),
                      "polars_ns_per_row": round(totals["polars"] / n, 1)}))


if __name__ == "__main__":
    main()
