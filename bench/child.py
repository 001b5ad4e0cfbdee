"""One measured run in a fresh process: a strategy, a floor, or the read-penalty queries.

    python -m bench.child SPEC.json RESULT.json

The child imports everything and opens the lake, prints "ready", and waits for "go" on stdin:
the parent's timer covers exactly the work (and the exit), not interpreter start or imports.
Peak RSS and CPU time come from the parent's wait4; storage bytes from /proc/self/io.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipeline.allocator import keep_freed_pages

keep_freed_pages()  # a scrubbing process's allocator settings, before pyarrow loads (below)

from generators.lake import peak_rss_mb  # noqa: E402  (this process's own VmHWM)


def proc_io() -> dict[str, int]:
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in lines)}


def run_strategy(spec: dict, lake) -> dict:  # noqa: ANN001
    import numpy as np

    from pipeline.intake import ErasureRequest
    from pipeline.scrub import run_scrub

    ids = np.asarray(json.loads(Path(spec["ids_file"]).read_text()), np.int64)
    import datetime as dt

    req = ErasureRequest(np.unique(ids), dt.datetime.now(dt.UTC), "bench", 0)
    out = run_scrub(lake, req, spec["name"], workers=spec["workers"])
    r = out.receipt
    return {"receipt": {k: r[k] for k in ("job_id", "totals", "timings_s", "verification",
                                          "keys_resolved", "engine_versions", "request")},
            "receipt_path": str(out.receipt_path)}


def run_format_logical(spec: dict, lake) -> dict:  # noqa: ANN001
    """A table format's logical step (its DELETE), the job recorded as waiting for a purge."""
    import datetime as dt

    import numpy as np

    from pipeline.format_scrub import run_format_scrub
    from pipeline.formats import FormatLake
    from pipeline.intake import ErasureRequest

    ids = np.asarray(json.loads(Path(spec["ids_file"]).read_text()), np.int64)
    req = ErasureRequest(np.unique(ids), dt.datetime.now(dt.UTC), "bench", 0)
    receipt, path = run_format_scrub(FormatLake.open(lake.root), req, spec["name"],
                                     logical_only=True)
    return {"receipt": receipt, "receipt_path": str(path)}


def run_format_purge(spec: dict, lake) -> dict:  # noqa: ANN001
    from pipeline.format_scrub import run_purge
    from pipeline.formats import FormatLake

    receipt, path = run_purge(FormatLake.open(lake.root), spec["name"])
    return {"receipt": receipt, "receipt_path": str(path)}


def run_floor(spec: dict, lake) -> dict:  # noqa: ANN001
    from bench.floors import FLOORS

    floor = FLOORS[spec["name"]]
    if spec["name"] == "scan":
        return floor(lake, spec["workers"])
    paths = json.loads(Path(spec["paths_file"]).read_text())
    return floor(lake, paths, spec["workers"])


QUERY_RUNS = 3  # one warm-up, then the best of two


def run_queries(spec: dict, lake) -> dict:  # noqa: ANN001
    from queries.named import run_named
    from queries.views import connect

    con = connect(lake.root)
    timings = {}
    for name, params in (("voice_history", {"customer_id": str(spec["probe_customer"])}),
                         ("region_volume", {})):
        # The first run meets whatever the page cache holds (the job just read or wrote
        # these files, or not): it is kept apart as `cold_seconds`; `seconds` is the best of
        # the two runs after it, which compares layouts rather than cache states.
        runs = []
        for _ in range(QUERY_RUNS):
            t0 = time.perf_counter()
            rows = len(run_named(con, name, params).fetchall())
            runs.append(time.perf_counter() - t0)
        timings[name] = {"seconds": min(runs[1:]), "cold_seconds": runs[0], "rows": rows}
    return {"queries": timings}


KINDS = {"strategy": run_strategy, "floor": run_floor, "queries": run_queries,
         "format_logical": run_format_logical, "format_purge": run_format_purge}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from pipeline.lake import Lake

    lake = Lake.open(Path(spec["lake"]))
    runner = KINDS[spec["kind"]]
    # Imports and compiled loops are process start-up, not work: done before "ready".
    from pipeline import kernels, scrub  # noqa: F401

    kernels.ready()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    io0, t0 = proc_io(), time.perf_counter()
    result = runner(spec, lake)
    seconds = time.perf_counter() - t0
    io1 = proc_io()
    result.update(work_s=seconds, io={k: io1.get(k, 0) - io0.get(k, 0) for k in io1},
                  peak_rss_mb=peak_rss_mb())
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
