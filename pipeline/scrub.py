"""The scrub job: intake → resolve → plan → execute → commit → verify → receipt.

The driver is shared by every strategy: a strategy only rewrites one file.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import strategies
from pipeline.commit import check_rewrite, commit_rewrite, make_durable, settle
from pipeline.faults import crashpoint
from pipeline.intake import ErasureRequest
from pipeline.journal import Journal
from pipeline.lake import Lake
from pipeline.plan import FilePlan, Planner
from pipeline.receipt import build_receipt, write_receipt
from pipeline.resolve import resolve_keys
from pipeline.strategies.base import RewriteResult, RewriteTask

Progress = Callable[[str, int, int], None]


@dataclass
class ScrubPlan:
    keys: dict[str, pa.Array]
    files: list[FilePlan]
    present_ids: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def touched(self) -> list[FilePlan]:
        return [f for f in self.files if f.touched]

    def to_json(self) -> dict:
        return {"files": [f.to_json() for f in self.files],
                "keys": {k: len(v) for k, v in self.keys.items()},
                "present_ids": int(len(self.present_ids))}


@dataclass
class ScrubOutcome:
    receipt: dict
    receipt_path: Path | None
    plan: ScrubPlan | None
    already_done: bool = False


def plan_scrub(lake: Lake, request: ErasureRequest, workers: int) -> ScrubPlan:
    t0 = time.perf_counter()
    cache: dict = {}
    keys = resolve_keys(lake, request.ids, workers, cache)
    t1 = time.perf_counter()
    planner = Planner(lake, keys, workers)
    subject = lake.lineage.subject
    jobs, by_table = [], {}
    for table in lake.tables():
        rules = [(r.column, r.key) for r in lake.lineage.rules_for(table)]
        subject_cols = tuple(c for c, k in rules if k == subject)
        plans = cache.get((table, tuple(rules)))
        if plans is None or any(c not in (p.matched_values.column_names
                                          if p.matched_values is not None else [c])
                                for p in plans for c in subject_cols):
            jobs.append((table, rules, subject_cols))
        else:
            by_table[table] = (plans, subject_cols)
    for (table, _, subject_cols), plans in zip(jobs, planner.plan_tables(jobs), strict=True):
        by_table[table] = (plans, subject_cols)
    files: list[FilePlan] = []
    present: list[np.ndarray] = []
    for table in lake.tables():
        plans, subject_cols = by_table[table]
        for fp in plans:
            if fp.matched_values is not None:
                for c in subject_cols:
                    present.append(fp.matched_values[c].to_numpy())
                fp.matched_values = None  # ids are not kept past the plan
            files.append(fp)
    present_ids = np.unique(np.concatenate(present)) if present else np.array([], np.int64)
    return ScrubPlan(keys, files, present_ids,
                     {"resolve": t1 - t0, "plan": time.perf_counter() - t1})


def _plan_from_json(lake: Lake, keys: dict[str, pa.Array], saved: dict) -> ScrubPlan:
    by_path = {f.path: f for t in lake.tables() for f in lake.files(t)}
    files = []
    for j in saved["files"]:
        f = by_path.get(j["path"])
        if f is None:
            continue
        # the manifest may already hold the new size; the plan holds the original file
        f = type(f)(f.table, f.path, j["rows"], j["bytes"], f.partition)
        fp = FilePlan(f, tuple(tuple(r) for r in j["rules"]), tuple(j["row_groups"]),
                      j["rows_matched"], j["pruned_by"], j["row_groups_total"])
        files.append(fp)
    return ScrubPlan(keys, files, np.array([], np.int64), {})


def run_scrub(lake: Lake, request: ErasureRequest, strategy_name: str, *, workers: int = 2,
              verify: str = "default", receipt_path: Path | None = None,
              progress: Progress | None = None) -> ScrubOutcome:
    """Erase the request's customers from every table, region and replica of the lake."""
    t_start = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    strategy = strategies.get(strategy_name)
    journal = Journal.for_request(lake.root, request.ids, create=False)
    if journal is not None and journal.finished:
        return ScrubOutcome(journal.receipt(), None, None, already_done=True)
    if journal is not None and journal.started:
        keys, saved = journal.load()
        plan = _plan_from_json(lake, keys, saved)
        present = np.asarray(saved.get("present_id_values", []), np.int64)
        plan.present_ids = present
        resumed = True
    else:
        lake.validate()  # before anything is written, the receipt key included
        journal = Journal.for_request(lake.root, request.ids)
        plan = plan_scrub(lake, request, workers)
        saved = plan.to_json()
        saved["present_id_values"] = plan.present_ids.tolist()
        journal.start(plan.keys, saved)
        resumed = False
        crashpoint("planned")
    t_exec = time.perf_counter()
    results = _execute(lake, plan, strategy, journal, workers, verify == "deep", progress)
    t_verify = time.perf_counter()
    changed = {p: (e["rows"], e["bytes"]) for p, e in journal.entries().items()
               if e["state"] == "committed"}
    crashpoint("after_commits")
    lake.update_manifest(changed)
    crashpoint("after_manifest")
    checks = verify_scrub(lake, plan, changed, results, deep=verify == "deep", workers=workers)
    t_end = time.perf_counter()
    timings = {**plan.seconds, "execute": t_verify - t_exec, "verify": t_end - t_verify,
               "total": t_end - t_start}
    receipt = build_receipt(lake, request, plan, strategy, results, changed, checks, timings,
                            started_at=started_at, resumed=resumed, verify=verify)
    path = write_receipt(lake, journal.job_id, receipt, receipt_path)
    crashpoint("after_receipt")
    if not checks["passed"]:
        raise VerificationError(f"verification failed: {checks['failures'][:3]} "
                                f"(receipt: {path})")
    journal.finish(receipt)
    return ScrubOutcome(receipt, path, plan)


class VerificationError(RuntimeError):
    pass


def _execute(lake: Lake, plan: ScrubPlan, strategy: strategies.Strategy, journal: Journal,
             workers: int, deep: bool, progress: Progress | None) -> dict[str, RewriteResult]:
    """Rewrite every touched file, non-mapping tables first and mapping tables last."""
    entries = journal.entries()
    results: dict[str, RewriteResult] = {}
    mapping = {d.table for d in lake.lineage.derived}
    todo = []
    for fp in plan.touched:
        e = entries.get(fp.file.path)
        if e and e["state"] == "committed":
            continue
        if settle(lake.root, fp.file.path, fp.rows_kept, journal):
            continue
        todo.append(fp)
    waves = [[f for f in todo if f.file.table not in mapping],
             [f for f in todo if f.file.table in mapping]]
    total, done = len(todo), 0
    if progress:
        progress("rewrite", 0, total)

    def one(fp: FilePlan) -> tuple[str, RewriteResult]:
        src = lake.root / fp.file.path
        schema = pq.read_schema(src)
        task = RewriteTask(src, journal.temp_path(src), fp.rules, plan.keys, fp.row_groups,
                           lake.writer_settings(fp.file.table, src), schema, fp.erase_rows)
        crashpoint("before_rewrite")
        result = strategy.rewrite(task)
        check_rewrite(fp, task, result, deep)
        crashpoint("before_rename")
        commit_rewrite(lake.root, fp, task, result, journal)
        fp.erase_rows = None  # done with: free it
        return fp.file.path, result

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for wave in waves:
            futures = {pool.submit(one, fp) for fp in wave}
            while futures:
                finished, futures = wait(futures, return_when=FIRST_EXCEPTION)
                for f in finished:
                    if f.exception() is not None:
                        for other in futures:
                            other.cancel()
                        wait(futures)
                        raise f.exception()
                    path, result = f.result()
                    results[path] = result
                    done += 1
                    if progress:
                        progress("rewrite", done, total)
    make_durable(lake.root, [fp.file.path for fp in plan.touched])
    return results


def verify_scrub(lake: Lake, plan: ScrubPlan, changed: dict[str, tuple[int, int]],
                 results: dict[str, RewriteResult], deep: bool, workers: int) -> dict:
    """Per table and region: rows after = rows before − rows erased; no key left anywhere."""
    failures: list[str] = []
    per: dict[tuple[str, str], dict] = {}
    for fp in plan.files:
        f = fp.file
        key = (f.table, f.region or "-")
        s = per.setdefault(key, {"rows_before": 0, "rows_erased": 0, "rows_after": 0})
        s["rows_before"] += f.rows
        s["rows_erased"] += fp.rows_matched
        if fp.touched:
            if f.path not in changed:
                failures.append(f"{f.path}: planned rewrite was not committed")
                continue
            s["rows_after"] += changed[f.path][0]
        else:
            s["rows_after"] += f.rows
    for (table, region), s in per.items():
        if s["rows_after"] != s["rows_before"] - s["rows_erased"]:
            failures.append(f"{table}/{region}: {s['rows_after']} rows after, expected "
                            f"{s['rows_before']} - {s['rows_erased']}")
    def footer_rows(path: str) -> int:
        return pq.ParquetFile(lake.root / path).metadata.num_rows

    footer_checked = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (path, (rows, _)), found in zip(changed.items(), pool.map(footer_rows, changed),
                                            strict=True):
            if found != rows:
                failures.append(f"{path}: footer row count differs from the journal")
            footer_checked += 1
    keys_left_streamed = sum(r.keys_left for r in results.values())
    if keys_left_streamed:
        failures.append(f"{keys_left_streamed} written rows still hold a key")
    rescan_left = None
    if deep:
        planner = Planner(lake, plan.keys, workers)
        rescan_left = 0
        for table in lake.tables():
            for fp in planner.plan_table(table):
                if fp.rows_matched:
                    rescan_left += fp.rows_matched
                    failures.append(f"{fp.file.path}: {fp.rows_matched} rows still hold a key")
    return {
        "passed": not failures,
        "failures": failures,
        "tables": {f"{t}/{r}": s for (t, r), s in sorted(per.items())},
        "footers_checked": footer_checked,
        "keys_left_in_written_rows": keys_left_streamed,
        "keys_left_on_rescan": rescan_left,
    }
