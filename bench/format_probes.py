"""Two measurements behind the table-format strategies' choices (README, "Table formats"):

1. Delta: `DELETE WHERE k IN (…)` against `MERGE … WHEN MATCHED DELETE` of a key table;
2. Iceberg: how much of pyiceberg's `delete(In(…))` goes into binding the literal set again for
   every data file (iceberg-python #4003's territory), by cProfile.

Both on the `actions` table of a generated lake, keyed by the recording ids of every 97th
customer (the ids a 1-in-97 erasure reaches through the lineage):

    python -m bench.format_probes --lake lakes/sf0.1-date-seed42
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.formats import FormatLake, get
from pipeline.formats.convert import format_writer, table_batches, table_schema
from pipeline.lake import Lake

TABLE = "actions"


def _keys(lake: Lake, step: int) -> pa.Array:
    import pyarrow.parquet as pq

    ids = pa.array(range(1, lake.manifest["config"]["n_customers"] + 1, step), pa.int64())
    found = []
    for f in lake.files("recordings"):
        t = pq.read_table(lake.root / f.path, columns=["recording_id", "customer_id"])
        found.append(t.filter(pc.is_in(t["customer_id"], value_set=ids))["recording_id"])
    return pc.unique(pa.chunked_array(found).combine_chunks())


def _load(lake: Lake, fmt: str, root: Path) -> FormatLake:
    flake = FormatLake(root, {"format": fmt, "tables": {}}, lake.lineage)
    schema, partition_by = table_schema(lake, TABLE)
    writer = format_writer(lake, TABLE)  # files of the converted lake's size
    get(fmt).create_table(flake, TABLE, schema, partition_by,
                          table_batches(lake, TABLE, schema), writer)
    return flake


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--every", type=int, default=97, help="erase every n-th customer")
    a = ap.parse_args()
    lake = Lake.open(a.lake)
    keys = _keys(lake, a.every)
    print(f"{len(keys):,} recording ids (every {a.every}th customer of {a.lake})")
    work = Path(tempfile.mkdtemp(prefix="format-probes-"))
    try:
        from deltalake import DeltaTable

        from pipeline.formats.delta import _literal

        flake = _load(lake, "delta", work / "delta")
        shutil.copytree(work / "delta", work / "delta2")
        t0 = time.perf_counter()
        m = DeltaTable(str(work / "delta" / TABLE)).delete(
            f"recording_id IN ({', '.join(map(_literal, keys.to_pylist()))})")
        t1 = time.perf_counter()
        m2 = DeltaTable(str(work / "delta2" / TABLE)).merge(
            source=pa.table({"k": keys}), predicate="t.recording_id = s.k", source_alias="s",
            target_alias="t").when_matched_delete().execute()
        t2 = time.perf_counter()
        print(f"delta: IN list {t1 - t0:.1f} s ({m['num_deleted_rows']:,} rows), MERGE "
              f"{t2 - t1:.1f} s ({m2['num_target_rows_deleted']:,} rows)")

        flake = _load(lake, "iceberg", work / "iceberg")
        files = len(get("iceberg").data_files(flake, TABLE))
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(get("iceberg").delete, flake, TABLE, "recording_id", keys)
        total = time.perf_counter() - t0
        stats = pstats.Stats(prof)
        binding = sum(v[3] for k, v in stats.stats.items()
                      if k[0].endswith("expressions/__init__.py") and k[2] == "bind")
        print(f"iceberg: delete {total:.1f} s over {files} data files; in In.bind "
              f"(re-bound per data file) {binding:.1f} s (cProfile, so slower than unprofiled)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
