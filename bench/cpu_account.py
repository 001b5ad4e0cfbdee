"""Where a scrub's CPU goes: per-step CPU time of one job, summed over the worker threads.

    python -m bench.cpu_account --lake lakes/sf1-date-seed42 --customers 1000 --strategy arrow

Runs the job on a fresh hard-linked snapshot (deleted afterwards) with the pipeline's steps
wrapped in per-thread CPU timers (`time.thread_time`): what a step's own thread spends in it,
Python and native code alike (numba, Arrow's reader and writer run in the calling thread).
Steps nest: `rewrite` holds `write`, which holds `encode` and `checksum`. `filter` is what is
left of `rewrite` once its named parts are taken out (the filter copy, mostly). The wrappers
cost about a microsecond a call; the process total is measured too. A diagnostic, not a
benchmark: the numbers are one run on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.allocator import keep_freed_pages

keep_freed_pages()  # as the scrub command does, before pyarrow loads (below)

import numpy as np  # noqa: E402

from bench.harness import pick_ids, snapshot  # noqa: E402
from pipeline import journal, kernels, plan, scrub  # noqa: E402
from pipeline.intake import ErasureRequest  # noqa: E402
from pipeline.lake import Lake  # noqa: E402
from pipeline.strategies import base, cow_arrow  # noqa: E402

# (owner, attribute, step name): wrapped where the calling module looks them up
STEPS = [
    (plan.Planner, "plan_file", "plan a file (incl. key resolution's mapping tables)"),
    (scrub._Execution, "_rewrite", "rewrite a file: task, strategy, checks, commit"),
    (cow_arrow, "_read_row_group", "read the columns the plan did not (arrow)"),
    (base.Sink, "__init__", "open the writer"),
    (base.Sink, "write", "write: hand kept rows to the writer"),
    (base.Sink, "_write_group", "encode a row group (Parquet writer)"),
    (base, "row_checksum", "row checksum of kept rows"),
    (base, "match_np", "key check of kept rows"),
    (base.Sink, "close", "close the writer, fsync"),
    (scrub, "check_rewrite", "commit checks (new footer vs plan)"),
    (scrub, "commit_rewrite", "rename, journal"),
    (journal.Journal, "log", "journal lines"),
]


class Account:
    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._undo: list[tuple[object, str, Callable]] = []

    def wrap(self, owner: object, attr: str, step: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - t0
                with self._lock:
                    self.cpu[step] += spent
                    self.calls[step] += 1

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def unwrap(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def account_scrub(lake_dir: Path, ids: list[int], strategy: str, workers: int,
                  work_dir: Path) -> dict:
    """Run one job on a snapshot of `lake_dir` with the steps timed; returns the account."""
    kernels.ready()
    snap = snapshot(lake_dir, work_dir / "cpu-account-snapshot")
    account = Account()
    try:
        for owner, attr, step in STEPS:
            account.wrap(owner, attr, step)
        request = ErasureRequest(np.unique(np.asarray(ids, np.int64)), dt.datetime.now(dt.UTC),
                                 "cpu_account", 0)
        c0, t0 = time.process_time(), time.perf_counter()
        out = scrub.run_scrub(Lake.open(snap), request, strategy, workers=workers)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        account.unwrap()
        shutil.rmtree(snap, ignore_errors=True)
    steps = {step: {"cpu_s": round(account.cpu[step], 3), "calls": account.calls[step]}
             for _, _, step in STEPS}
    # the strategy's own reading and filtering: what rewrite spends outside its named parts
    inside = sum(account.cpu[s] for s in (
        "open the writer", "write: hand kept rows to the writer", "close the writer, fsync",
        "commit checks (new footer vs plan)", "rename, journal",
        "read the columns the plan did not (arrow)"))
    steps["rest of rewrite: filter (and, but for arrow, reading), task set-up"] = {
        "cpu_s": round(account.cpu["rewrite a file: task, strategy, checks, commit"] - inside, 3)}
    return {"strategy": strategy, "wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3),
            "timings_s": out.receipt["timings_s"], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", type=Path, default=Path("lakes/sf1-date-seed42"))
    ap.add_argument("--customers", type=int, default=1000, help="random customers to erase")
    ap.add_argument("--strategy", default="arrow")
    ap.add_argument("--workers", type=int, default=0, help="files in flight (0: cores + 1)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    manifest = json.loads((args.lake / "_lake.json").read_text())
    ids = pick_ids(manifest, args.customers, args.seed)
    workers = args.workers or (os.cpu_count() or 1) + 1
    work = args.lake.parent / f".{args.lake.name}.cpu-account"
    result = account_scrub(args.lake, ids, args.strategy, workers, work)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
