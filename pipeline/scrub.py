"""The scrub job: intake → resolve → plan → execute → commit → verify → receipt.

The driver is shared by every strategy: a strategy only rewrites one file.

Plan and rewrite are pipelined: each file is rewritten as soon as its own plan is known, by the
worker that planned it (so the key columns it read are not read twice, and the plan's work
fills the cores that the rewrites' fsync waits leave idle). What makes this safe to kill:

- the resolved keys are journaled before any file is planned;
- a touched file's plan is journaled before its rewrite starts, and the rewrite is committed by
  an atomic rename; mapping tables (the lineage's own links) are rewritten last;
- `_lake.json` is the "before" record until every rewrite is done: a resumed job tells a file
  already rewritten from one still to do by its plan entry, else by its footer's row count
  against the manifest's (a rewrite always drops a row);
- when every file is done, the complete plan is written durably, and only then is the manifest
  updated.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import strategies
from pipeline.commit import (
    check_rewrite,
    commit_rewrite,
    file_identity,
    make_durable,
    settle,
)
from pipeline.damage import UnreadableFile, UnreadableFiles, as_damage, read_failure
from pipeline.faults import crashpoint
from pipeline.intake import ErasureRequest
from pipeline.journal import Journal
from pipeline.lake import DataFile, Lake, open_parquet
from pipeline.lock import lake_lock
from pipeline.plan import FilePlan, Planner, Rule
from pipeline.receipt import (
    build_receipt,
    failed_attempts,
    receipt_file,
    refuse_unfinished,
    write_failed_receipt,
    write_receipt,
    write_receipt_copy,
)
from pipeline.resolve import resolve_keys
from pipeline.room import check_room, check_writable
from pipeline.signals import StopRequest, exit_code_of, stop_requests, unless_stopped
from pipeline.strategies.base import RewriteResult, RewriteTask

Progress = Callable[[str, int, int], None]
PHASE = "plan + rewrite"  # the progress phase of the execution (counts files)


# What a dry run counts per table and region (`ScrubPlan.summary`): files = scanned + skipped.
SKIPPED_BY = ("bucket", "stats", "bloom", "no_keys")
PLAN_COUNTS = ("files", *(f"skipped_by_{m}" for m in SKIPPED_BY), "scanned", "to_rewrite",
               "row_groups", "rows_to_erase", "bytes_to_rewrite", "bytes_scanned")


@dataclass
class ScrubPlan:
    keys: dict[str, pa.Array]
    files: list[FilePlan]
    present_ids: np.ndarray

    @property
    def touched(self) -> list[FilePlan]:
        return [f for f in self.files if f.touched]

    def to_json(self) -> dict:
        return {"files": [f.to_json() for f in self.files],
                "keys": {k: len(v) for k, v in self.keys.items()},
                "present_ids": int(len(self.present_ids))}

    def summary(self, requested: np.ndarray) -> dict:
        """What a dry run shows: per table and region the files skipped (by what), scanned
        and to rewrite, row groups, rows and bytes; totals; and every file to rewrite."""
        groups: dict[tuple[str, str], dict[str, int]] = {}
        for fp in self.files:
            g = groups.setdefault((fp.file.table, fp.file.region), dict.fromkeys(PLAN_COUNTS, 0))
            g["files"] += 1
            if fp.pruned_by is not None:  # "no keys": none of its table's rules has a key
                g[f"skipped_by_{fp.pruned_by.replace(' ', '_')}"] += 1
            g["scanned"] += fp.pruned_by is None
            g["to_rewrite"] += fp.touched
            g["row_groups"] += len(fp.row_groups)
            g["rows_to_erase"] += fp.rows_matched
            g["bytes_to_rewrite"] += fp.file.bytes if fp.touched else 0
            g["bytes_scanned"] += fp.bytes_scanned
        rows = [{"table": t, "region": r, **g} for (t, r), g in groups.items()]
        totals = {k: sum(row[k] for row in rows) for k in PLAN_COUNTS}
        return {
            "customers_requested": int(len(requested)),
            "customers_not_found": int(len(np.setdiff1d(requested, self.present_ids))),
            "keys": {k: len(v) for k, v in self.keys.items()},
            "totals": totals, "by_table_region": rows,
            "files_to_rewrite": [{"path": fp.file.path, "table": fp.file.table,
                                  "region": fp.file.region, "rows": fp.file.rows,
                                  "rows_to_erase": fp.rows_matched, "bytes": fp.file.bytes,
                                  "row_groups": list(fp.row_groups),
                                  "row_groups_total": fp.row_groups_total}
                                 for fp in self.touched]}


@dataclass
class ScrubOutcome:
    receipt: dict
    receipt_path: Path | None
    plan: ScrubPlan | None
    already_done: bool = False
    # the unfinished job this command finished first, as it had started (footer verification),
    # before the job of this outcome verified the lake deep
    resumed_first: ScrubOutcome | None = None


def table_jobs(lake: Lake) -> list[tuple[str, tuple[Rule, ...], tuple[str, ...]]]:
    """(table, rules, subject columns) of every table the lineage names, in order."""
    subject = lake.lineage.subject
    jobs = []
    for table in lake.tables():
        rules = tuple((r.column, r.key) for r in lake.lineage.rules_for(table))
        jobs.append((table, rules, tuple(c for c, k in rules if k == subject)))
    return jobs


def _cached_plans(cache: dict, table: str, rules: tuple[Rule, ...],
                  subject_cols: tuple[str, ...]) -> list[FilePlan] | None:
    """The plans key resolution already made of a table, if they serve the scrub as well."""
    plans = cache.get((table, rules))
    if plans is None or any(c not in (p.matched_values.column_names
                                      if p.matched_values is not None else [c])
                            for p in plans for c in subject_cols):
        return None
    return plans


def _take_present(fp: FilePlan, subject_cols: tuple[str, ...]) -> np.ndarray:
    """The subject ids a file's matched rows hold; the plan forgets them (not kept past it)."""
    found = [fp.matched_values[c].to_numpy() for c in subject_cols
             if fp.matched_values is not None]
    fp.matched_values = None
    return np.unique(np.concatenate(found)) if found else np.array([], np.int64)


def plan_scrub(lake: Lake, request: ErasureRequest, workers: int,
               trust_metadata: bool = True) -> ScrubPlan:
    """The whole plan, made before anything is written (`--dry-run`); without
    `trust_metadata`, the plan of a `--verify deep` job (see Planner)."""
    cache: dict = {}
    keys = resolve_keys(lake, request.ids, workers, cache, trust_metadata=trust_metadata)
    planner = Planner(lake, keys, workers, trust_metadata=trust_metadata)
    jobs, by_table = [], {}
    for table, rules, subject_cols in table_jobs(lake):
        plans = _cached_plans(cache, table, rules, subject_cols)
        if plans is None:
            jobs.append((table, list(rules), subject_cols))
        else:
            by_table[table] = plans
    for (table, _, _), plans in zip(jobs, planner.plan_tables(jobs), strict=True):
        by_table[table] = plans
    files: list[FilePlan] = []
    present: list[np.ndarray] = []
    for table, _, subject_cols in table_jobs(lake):
        for fp in by_table[table]:
            present.append(_take_present(fp, subject_cols))
            files.append(fp)
    present_ids = np.unique(np.concatenate(present)) if present else np.array([], np.int64)
    return ScrubPlan(keys, files, present_ids)


def _plan_from_json(lake: Lake, entries: list[dict]) -> dict[str, FilePlan]:
    """File plans as the journal holds them (path -> plan), for the files still in the lake."""
    by_path = {f.path: f for t in lake.tables() for f in lake.files(t)}
    out = {}
    for j in entries:
        f = by_path.get(j["path"])
        if f is None:
            continue
        # the manifest may already hold the new size; the plan holds the original file
        f = type(f)(f.table, f.path, j["rows"], j["bytes"], f.partition)
        out[f.path] = FilePlan(f, tuple(tuple(r) for r in j["rules"]), tuple(j["row_groups"]),
                               j["rows_matched"], j["pruned_by"], j["row_groups_total"],
                               j["bytes_scanned"], j.get("row_groups_pruned_by_bloom", 0))
    return out


def run_scrub(lake: Lake, request: ErasureRequest, strategy_name: str, *, workers: int = 2,
              verify: str = "default", receipt_path: Path | None = None,
              progress: Progress | None = None) -> ScrubOutcome:
    """Erase the request's customers from every table, region and replica of the lake."""
    with lake_lock(lake.root):
        outcome = _run_scrub(lake, request, strategy_name, workers=workers, verify=verify,
                             receipt_path=receipt_path, progress=progress)
        if verify == "deep" and outcome.receipt["verification"]["mode"] != "deep":
            # An unfinished job started with footer verification was resumed: it finished as
            # it started (its keys were resolved trusting footer statistics). Deep was asked
            # for, so the next job of the request re-resolves, plans and verifies trusting
            # nothing, and erases what the first one's metadata hid.
            deep = _run_scrub(lake, request, strategy_name, workers=workers, verify=verify,
                              receipt_path=receipt_path, progress=progress)
            # its receipt as the lake keeps it (a --receipt copy now holds the deep job's)
            deep.resumed_first = replace(
                outcome, receipt_path=receipt_file(lake.root, outcome.receipt["job_id"]))
            return deep
        return outcome


def _run_scrub(lake: Lake, request: ErasureRequest, strategy_name: str, *, workers: int,
               verify: str, receipt_path: Path | None, progress: Progress | None
               ) -> ScrubOutcome:
    t_start = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    strategy = strategies.get(strategy_name)
    lake.reload()  # the manifest as it is now that this job holds the lake
    fingerprint = lake.fingerprint()
    journal = Journal.for_request(lake.root, request.ids, create=False,
                                  fingerprint=fingerprint, verify=verify)
    if journal is not None and journal.finished:
        # an unfinished job of these ids comes first (a deep job run after a footer-verified
        # one, killed before it changed the manifest, leaves the first one standing)
        journal = Journal.unfinished_for(lake.root, request.ids, lake.lineage.subject) or \
            journal
    if journal is not None and journal.finished:
        # Nothing changed since this request's job finished (else for_request would have
        # named the next job): a no-op, once the files are checked to still be the
        # manifest's (rows added behind its back must not pass as done).
        lake.validate()
        done = journal.receipt()
        if receipt_path is not None:
            receipt_path = write_receipt_copy(done, receipt_path,
                                              kept_at=receipt_file(lake.root, journal.job_id))
        return ScrubOutcome(done, receipt_path, None, already_done=True)
    check_writable(lake)
    check_room(lake, workers)
    seconds: dict[str, float] = {}
    cache: dict = {}  # key resolution's plans of the mapping tables, reused by the scrub
    if journal is None or not journal.started:
        journal = Journal.unfinished_for(lake.root, request.ids, lake.lineage.subject) or journal
    if journal is not None and journal.started:
        keys, saved = journal.load()
        resumed = True
        # a job finishes as it started: its keys, its plans, its verification (jobs from
        # before the mode was journaled verified by footers)
        verify = saved.get("verify", "default")
    else:
        # A killed job's files and manifest are half old, half new: another job run now
        # would rewrite the same files, and the killed one, resumed later, would write its
        # stale counts into the manifest. Its own command must finish it first.
        refuse_unfinished(lake.root, Journal.unfinished(lake.root), lake.lineage.subject)
        lake.validate()  # before anything is written, the receipt key included
        journal = Journal.for_request(lake.root, request.ids, fingerprint=fingerprint,
                                      verify=verify)
        # `--verify deep` trusts no metadata from the start: a key that a damaged footer
        # statistic or a misplaced file hides is resolved and erased, not only reported
        try:
            keys = resolve_keys(lake, request.ids, workers, cache,
                                trust_metadata=verify != "deep")
        except (KeyboardInterrupt, SystemExit) as e:
            raise JobNotStarted(exit_code_of(e)) from None
        saved = {"complete": False, "verify": verify}
        journal.start(keys, saved)
        resumed = False
        seconds["resolve"] = time.perf_counter() - t_start
        crashpoint("resolved")
    t_exec = time.perf_counter()
    run = _Execution(lake, keys, strategy, journal, workers, verify == "deep", progress,
                     resumed, cache)
    plan, results = run.execute(saved)
    if not saved.get("complete"):
        # every file is done: the complete plan, durably, before the manifest changes
        full = plan.to_json()
        full["complete"] = True
        full["present_id_values"] = plan.present_ids.tolist()
        full["verify"] = verify
        journal.complete(full)
    crashpoint("planned")
    make_durable(lake.root, [fp.file.path for fp in plan.touched])
    t_verify = time.perf_counter()
    changed = {p: (e["rows"], e["bytes"]) for p, e in journal.entries().items()
               if e["state"] == "committed"}
    crashpoint("after_commits")
    lake.update_manifest(changed)
    crashpoint("after_manifest")
    checks = verify_scrub(lake, plan, changed, results, deep=verify == "deep", workers=workers)
    t_end = time.perf_counter()
    timings = {**seconds, "execute": t_verify - t_exec, "verify": t_end - t_verify,
               "total": t_end - t_start,
               **{f"workers_{k}": v for k, v in run.worker_seconds.items()}}
    receipt = build_receipt(lake, request, plan, strategy, results, changed, checks, timings,
                            started_at=started_at, resumed=resumed, verify=verify)
    # the lake as this job leaves it: a re-run of the request is a no-op only while it holds
    receipt["lake_fingerprint"] = lake.fingerprint()
    if not checks["passed"]:
        receipt["job_id"] = journal.job_id
        where = write_failed_receipt(lake.root, journal.job_id, receipt, receipt_path)
        raise VerificationError(
            f"verification failed: {checks['failures'][:3]} ({where}); job "
            f"{journal.job_id} is unfinished: re-run the same command to finish it (other "
            "jobs on this lake are refused until then)")
    if failed := failed_attempts(lake.root, journal.job_id):
        receipt["failed_attempts"] = failed  # kept beside it, under these names
    path = write_receipt(lake, journal.job_id, receipt)
    crashpoint("after_receipt")
    journal.finish(receipt)
    if receipt_path is not None:  # once the job is done: a failed copy cannot leave it open
        path = write_receipt_copy(receipt, receipt_path, kept_at=path)
    return ScrubOutcome(receipt, path, plan)


class VerificationError(RuntimeError):
    pass


class JobNotStarted(Exception):  # noqa: N818 (named for what the user is told)
    """Ctrl-C or SIGTERM while the keys were resolved: no job exists, nothing was written."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("interrupted while resolving the customers' keys, before the job "
                         "started: no data file was touched")
        self.exit_code = exit_code


class JobInterrupted(KeyboardInterrupt):
    """The job was stopped (Ctrl-C, SIGTERM) between files: unfinished, every file whole."""

    def __init__(self, job_id: str, committed: int, exit_code: int) -> None:
        super().__init__(f"interrupted: job {job_id} stopped after rewriting {committed:,} "
                         "file(s), each complete, and is unfinished: re-run the same command "
                         "to finish it")
        self.exit_code = exit_code


class _Execution:
    """Plan and rewrite every file of the lake, one file per task: non-mapping tables first,
    mapping tables (the lineage's links) last, so that the links that let an audit follow
    the lineage are the last thing a killed job leaves half done."""

    def __init__(self, lake: Lake, keys: dict[str, pa.Array], strategy: strategies.Strategy,
                 journal: Journal, workers: int, deep: bool, progress: Progress | None,
                 resumed: bool, cache: dict) -> None:
        self.lake, self.keys, self.strategy, self.journal = lake, keys, strategy, journal
        self.workers, self.deep, self.progress = max(1, workers), deep, progress
        self.resumed, self.cache = resumed, cache
        self.planner = Planner(lake, keys, self.workers, trust_metadata=not deep)
        self.present: set[int] = set()
        # summed over workers: how the execution's time splits between planning and rewriting
        self.worker_seconds = {"plan": 0.0, "rewrite": 0.0}
        self._lock = threading.Lock()

    def execute(self, saved: dict) -> tuple[ScrubPlan, dict[str, RewriteResult]]:
        entries = self.journal.entries()
        if saved.get("complete"):
            known = _plan_from_json(self.lake, saved["files"])
        else:
            known = _plan_from_json(self.lake, [e["plan"] for e in entries.values()
                                                if "plan" in e])
        self.present.update(int(i) for i in saved.get("present_id_values", []))
        for e in entries.values():
            self.present.update(e.get("present", []))
        mapping = {d.table for d in self.lake.lineage.derived}
        tasks, waves = [], [[], []]
        for table, rules, subject_cols in table_jobs(self.lake):
            cached = _cached_plans(self.cache, table, rules, subject_cols)
            for i, f in enumerate(self.lake.files(table)):
                if saved.get("complete") and f.path not in known:
                    continue  # a file the job did not plan (the lake changed): not its business
                plan = known.get(f.path) or (cached[i] if cached is not None else None)
                waves[table in mapping].append(len(tasks))
                tasks.append((f, rules, subject_cols, plan, entries.get(f.path)))
        plans: list[FilePlan | None] = [None] * len(tasks)
        results: dict[str, RewriteResult] = {}
        with ThreadPoolExecutor(self.workers) as pool, stop_requests() as stop:
            unreadable = self._run_waves(pool, tasks, waves, plans, results, stop)
            if stop.signum is not None:
                # Ctrl-C or SIGTERM: the files in flight finish (each is whole, old or new),
                # no other starts, and the journal lets the same command finish the job.
                pool.shutdown(wait=True, cancel_futures=True)
                raise JobInterrupted(self.journal.job_id, self._committed(), 128 + stop.signum)
        if unreadable:
            raise UnreadableFiles(unreadable, self._committed(), self.journal.job_id)
        present = np.array(sorted(self.present), np.int64)
        return ScrubPlan(self.keys, [p for p in plans if p is not None], present), results

    def _committed(self) -> int:
        """Files this job has committed so far (this run and any before it)."""
        return sum(e["state"] == "committed" for e in self.journal.entries().values())

    def _run_waves(self, pool: ThreadPoolExecutor, tasks: list[tuple], waves: list[list[int]],
                   plans: list[FilePlan | None], results: dict[str, RewriteResult],
                   stop: StopRequest) -> list[UnreadableFile]:
        """Run every task, a wave at a time, into `plans` and `results`, until done or `stop`
        is requested; returns the files that could not be read (the other files went on)."""
        unreadable: list[UnreadableFile] = []
        done = 0
        if self.progress:
            self.progress(PHASE, 0, len(tasks))
        for wave in waves:
            # After an unreadable file, the links stay while rows they lead to stay (the audit
            # follows them): the mapping tables are only read through, so that every
            # unreadable file is named at once.
            run = self.one if not unreadable else self.check_readable
            # a task skipped after a stop returns None: the caller sees the stop and raises
            futures = {pool.submit(unless_stopped, stop, run, *tasks[k]): k for k in wave}
            pending = set(futures)
            while pending:
                if stop.signum is not None:
                    return unreadable
                # short naps, so a stop request is seen within 0.2 s
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    exc = fut.exception()
                    if isinstance(exc, UnreadableFile):
                        unreadable.append(exc)  # the file stays as it is; the others go on
                    elif exc is not None:
                        for other in pending:
                            other.cancel()
                        wait(pending)
                        raise exc
                    elif fut.result() is not None:
                        fp, result = fut.result()
                        plans[futures[fut]] = fp
                        if result is not None:
                            results[fp.file.path] = result
                    done += 1
                    if self.progress:
                        self.progress(PHASE, done, len(tasks))
        return unreadable

    def one(self, f: DataFile, rules: tuple[Rule, ...], subject_cols: tuple[str, ...],
            fp: FilePlan | None, entry: dict | None) -> tuple[FilePlan, RewriteResult | None]:
        """Plan one file (unless its plan is known), then rewrite it if it holds a key. A
        file that cannot be read raises UnreadableFile (see pipeline.damage)."""
        try:
            return self._one(f, rules, subject_cols, fp, entry)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 (classified, then raised; e.g. a Polars
            # PanicException is a BaseException. A CommitError is the new file's fault
            # unless the source cannot be read: an engine may stop early on a damaged file.)
            damage = as_damage(e, self.lake.root, f.path)
            if damage is e:
                raise
            raise damage from e

    def check_readable(self, f: DataFile, *_: object) -> None:
        cause = read_failure(self.lake.root / f.path)
        if cause is not None:
            raise UnreadableFile(f.path, cause)

    def _one(self, f: DataFile, rules: tuple[Rule, ...], subject_cols: tuple[str, ...],
             fp: FilePlan | None, entry: dict | None) -> tuple[FilePlan, RewriteResult | None]:
        if fp is None and self.resumed:
            done = self._rewritten_before(f, rules)
            if done is not None:
                return done, None
        if fp is None:
            t0 = time.perf_counter()
            fp = self.planner.plan_file(f, rules, subject_cols,
                                        keep_columns=self.strategy.reads_planned_columns)
            self._spent("plan", t0)
        try:
            return fp, self._rewrite_if_touched(f, subject_cols, fp, entry)
        finally:
            if fp.source is not None:  # the plan's open file, when no rewrite took it over
                fp.source.close()
                fp.source = None

    def _rewrite_if_touched(self, f: DataFile, subject_cols: tuple[str, ...], fp: FilePlan,
                            entry: dict | None) -> RewriteResult | None:
        new = self._note_present(_take_present(fp, subject_cols))
        if not fp.touched:
            return None
        if entry is None or "plan" not in entry:
            # the plan is on record before the file can change
            self.journal.log({"path": f.path, "state": "planned", "plan": fp.to_json(),
                              "present": new})
            crashpoint("after_plan")
        elif entry["state"] == "committed":
            return None
        if self.resumed and settle(self.lake.root, f.path, fp.rows_kept, self.journal):
            return None
        t0 = time.perf_counter()
        result = self._rewrite(fp)
        self._spent("rewrite", t0)
        return result

    def _spent(self, what: str, since: float) -> None:
        with self._lock:
            self.worker_seconds[what] += time.perf_counter() - since

    def _note_present(self, ids: np.ndarray) -> list[int]:
        """Add subject ids found in a file; returns those not seen before (to journal)."""
        with self._lock:
            new = [i for i in ids.tolist() if i not in self.present]
            self.present.update(new)
        return new

    def _rewritten_before(self, f: DataFile, rules: tuple[Rule, ...]) -> FilePlan | None:
        """On resume, a file whose plan entry was lost (the journal is not fsynced) but whose
        rewrite was renamed in: the manifest still holds its original row count, and a rewrite
        always drops a row."""
        footer = open_parquet(self.lake.root / f.path).metadata.num_rows
        if footer >= f.rows:
            self.journal.temp_path(self.lake.root / f.path).unlink(missing_ok=True)
            return None
        fp = FilePlan(f, rules, rows_matched=f.rows - footer)
        self.journal.log({"path": f.path, "state": "committed", "plan": fp.to_json(),
                          "rows": footer, "bytes": (self.lake.root / f.path).stat().st_size,
                          "checksum": None})
        return fp

    def _rewrite(self, fp: FilePlan) -> RewriteResult:
        src = self.lake.root / fp.file.path
        # the source as the plan opened it (this call owns it now), else opened here
        source = fp.source if fp.source is not None else open_parquet(src)
        fp.source = None
        try:
            task = RewriteTask(src, self.journal.temp_path(src), fp.rules, self.keys,
                               fp.row_groups, self.lake.writer_settings(fp.file.table, src),
                               source.schema_arrow, source, fp.erase_rows, fp.key_tables)
            fp.erase_rows = fp.key_tables = None  # the task holds them now; freed with it
            crashpoint("before_rewrite")
            try:
                result = self.strategy.rewrite(task)
                check_rewrite(fp, task, result, self.deep)
            except BaseException:
                task.dst.unlink(missing_ok=True)  # whatever the engine or the checks left
                raise
        finally:
            source.close()
        crashpoint("before_rename")
        commit_rewrite(self.lake.root, fp, task, result, self.journal)
        return result


# why a file the plan ruled out by its metadata can still hold a key
_RULED_OUT_BY = {
    "bucket": "the plan skipped it by bucket routing: it holds keys of another bucket",
    "stats": "the plan skipped it by its row-group statistics: they disagree with its data",
    "bloom": "the plan skipped it by its bloom filters: they disagree with its data"}


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
    # A file this process committed had its footer checked against the plan just before its
    # rename; if the path still holds that very file, its footer need not be parsed again.
    # Files committed by an earlier (killed) run, or changed since, are re-read.
    reread = [p for p in changed
              if p not in results or results[p].committed_as is None
              or file_identity((lake.root / p).stat()) != results[p].committed_as]

    def footer_rows(path: str) -> int:
        return open_parquet(lake.root / path).metadata.num_rows

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for path, found in zip(reread, pool.map(footer_rows, reread), strict=True):
            if found != changed[path][0]:
                failures.append(f"{path}: footer row count differs from the journal")
    keys_left_streamed = sum(r.keys_left for r in results.values())
    if keys_left_streamed:
        failures.append(f"{keys_left_streamed} written rows still hold a key")
    rescan_left = None
    if deep:
        # reads every key column of every row group: the deep check rests on no bucket
        # routing, statistics or bloom filter, so it also catches what a plan made with them
        # (a default run's, or one resumed from it) let a damaged footer hide
        planner = Planner(lake, plan.keys, workers, use_bloom=False, trust_metadata=False)
        ruled_out = {fp.file.path: fp.pruned_by for fp in plan.files
                     if fp.pruned_by in ("bucket", "stats", "bloom")}
        rescan_left = 0
        for table in lake.tables():
            try:
                table_plans = planner.plan_table(table)
            except UnreadableFiles as e:
                failures += [f"{f.path}: cannot be read on rescan ({f.cause})" for f in e.files]
                continue
            for fp in table_plans:
                if fp.rows_matched:
                    rescan_left += fp.rows_matched
                    why = ruled_out.get(fp.file.path)
                    failures.append(
                        f"{fp.file.path}: {fp.rows_matched} rows still hold a key"
                        + (f" ({_RULED_OUT_BY[why]})" if why else ""))
    return {
        "passed": not failures,
        "failures": failures,
        "tables": {f"{t}/{r}": s for (t, r), s in sorted(per.items())},
        "footers_checked": len(changed),
        "footers_reread": len(reread),
        "keys_left_in_written_rows": keys_left_streamed,
        # rows erased at positions the plan matched, each checked to hold a key (a rewrite
        # that erased one without a key fails its commit check)
        "erased_rows_checked_for_a_key": sum(r.erased_checked for r in results.values()),
        "keys_left_on_rescan": rescan_left,
    }
