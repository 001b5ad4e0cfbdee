"""One measured contender, run in a fresh process by bench/test_generate_bench.py.

    python -m bench.generate_child <contender> '<json args>' <result.json>

The child times its own work (imports and interpreter start excluded) and writes a JSON result;
the parent measures wall time, peak RSS and CPU time of the whole process (os.wait4).
Contenders: ``voicescrub`` (our lake generator), ``dbgen`` (DuckDB's TPC-H generator + COPY to
Parquet), ``faker`` (Faker row by row, written with pyarrow).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_voicescrub(sf: float, layout: str, out: str) -> dict:
    from generators.config import LakeConfig
    from generators.lake import generate

    cfg = LakeConfig(sf=sf, layout=layout, workers=0)
    c0, t0 = _cpu_s(), time.perf_counter()
    manifest = generate(cfg, Path(out), force=True)
    seconds, cpu = time.perf_counter() - t0, _cpu_s() - c0
    tables = manifest["tables"]
    primary_bytes = sum(f["bytes"] for t in tables.values() for f in t["files"]
                        if f["region"] == f["origin"])
    return {
        "rows": sum(t["rows"] for t in tables.values()),
        "replica_rows": sum(t["replica_rows"] for t in tables.values()),
        "bytes": sum(t["bytes"] for t in tables.values()),
        "primary_bytes": primary_bytes,
        "files": sum(len(t["files"]) for t in tables.values()),
        "rows_by_table": {k: t["rows"] for k, t in tables.items()},
        "replica_rows_by_table": {k: t["replica_rows"] for k, t in tables.items()},
        "work_s": seconds,
        "work_cpu_s": cpu,
        "workers": cfg.n_workers,
        "generator_version": manifest["generator_version"],
        "n_customers": cfg.n_customers,
        "n_buckets": cfg.n_buckets if layout == "bucket" else None,
        "manifest_generation_s": manifest["generation_seconds"],
        # each process's own high-water RSS (VmHWM), as the generator recorded it
        "worker_vmhwm_mb": manifest.get("generation_peak_rss_mb", {}).get("largest_worker"),
        "parent_vmhwm_mb": manifest.get("generation_peak_rss_mb", {}).get("parent"),
    }


def run_dbgen(sf: float, out: str, threads: int) -> dict:
    import duckdb

    from pipeline.duckdb_ext import load_extension

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    con.execute(f"SET threads = {int(threads)}")
    t0 = time.perf_counter()
    ext = load_extension(con, "tpch")
    load_s = time.perf_counter() - t0

    c0, t0 = _cpu_s(), time.perf_counter()
    con.execute(f"CALL dbgen(sf={float(sf)!r})")
    dbgen_s, dbgen_cpu = time.perf_counter() - t0, _cpu_s() - c0

    tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
    rows_by_table = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}

    c1, t1 = _cpu_s(), time.perf_counter()
    for t in tables:
        target = (out_dir / f"{t}.parquet").as_posix().replace("'", "''")
        con.execute(f"COPY \"{t}\" TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    copy_s, copy_cpu = time.perf_counter() - t1, _cpu_s() - c1
    con.close()
    return {
        "rows": sum(rows_by_table.values()),
        "replica_rows": 0,
        "bytes": _dir_bytes(out_dir),
        "files": len(tables),
        "rows_by_table": rows_by_table,
        "work_s": dbgen_s + copy_s,
        "work_cpu_s": dbgen_cpu + copy_cpu,
        "dbgen_s": dbgen_s,
        "copy_s": copy_s,
        "dbgen_cpu_s": dbgen_cpu,
        "copy_cpu_s": copy_cpu,
        "load_extension_s": load_s,
        "extension": str(ext),
        "threads": int(threads),
    }


def run_faker(rows: int, out: str, seed: int = 42) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from faker import Faker

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fake = Faker("en_US")
    fake.seed_instance(seed)
    setup_s = time.perf_counter() - t0

    c0, t0 = _cpu_s(), time.perf_counter()
    records = []
    for i in range(1, rows + 1):  # one Faker call per field per row: the row-by-row way
        records.append({
            "customer_id": i,
            "full_name": fake.name(),
            "email": fake.email(),
            "phone": fake.phone_number(),
            "street_address": fake.street_address(),
            "city": fake.city(),
        })
    faker_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    table = pa.Table.from_pylist(records)
    path = out_dir / "customers.parquet"
    pq.write_table(table, path, compression="zstd")
    write_s = time.perf_counter() - t1
    return {
        "rows": rows,
        "replica_rows": 0,
        "bytes": path.stat().st_size,
        "files": 1,
        "rows_by_table": {"customers": rows},
        "work_s": faker_s + write_s,
        "work_cpu_s": _cpu_s() - c0,
        "faker_s": faker_s,
        "write_s": write_s,
        "setup_s": setup_s,
        "fields_per_row": 5,
    }


CONTENDERS = {"voicescrub": run_voicescrub, "dbgen": run_dbgen, "faker": run_faker}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in CONTENDERS:
        print(f"usage: python -m bench.generate_child {{{'|'.join(CONTENDERS)}}} "
              "'<json kwargs>' <result.json>", file=sys.stderr)
        return 2
    name, kwargs, result_path = argv[0], json.loads(argv[1]), Path(argv[2])
    result = CONTENDERS[name](**kwargs)
    result["pid"] = os.getpid()
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
