"""The scrub job on a table-format lake (Delta, Iceberg, DuckLake): two measured steps.

1. logical: the format's own DELETE of every row the lineage reaches, table by table (mapping
   tables last, as in the copy-on-write job);
2. physical (`purge`): whatever the format needs until no byte of a deleted row is left.

`scrub --logical-only` runs step 1 and records the job as waiting for a purge; `purge` runs
step 2 for every waiting job (a format's purge is table-wide, as nightly maintenance is); a
plain `scrub` runs both. Each format commits atomically, so a killed job re-run with the same
command finishes (a DELETE of rows already deleted deletes nothing).

Verification (the same promises as the copy-on-write job, checked through the formats):
- rows: per table, rows after = rows before − rows matched (matched counted by a scan of the key
  columns before the DELETE), and the DELETE's own count agrees;
- no key left: a scan of the key columns of the new snapshot finds none;
- kept rows unchanged: the files a step rewrote hold exactly the old files' rows minus the
  erased ones (order-insensitive checksum); a purge changes no visible row.
Verification is timed apart from the two steps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.faults import crashpoint
from pipeline.formats import FormatLake, StepResult, TableFormat
from pipeline.formats import get as get_format
from pipeline.formats.orphans import orphans_removed_on_failure
from pipeline.intake import ErasureRequest
from pipeline.journal import Journal, keyed_hashes, lake_secret
from pipeline.lake import SCRUB_DIR
from pipeline.lock import lake_lock
from pipeline.plan import is_view, key_array, match, match_np, plain_views
from pipeline.receipt import (
    engine_versions,
    failed_attempts,
    receipt_file,
    refuse_unfinished,
    write_failed_receipt,
    write_receipt_copy,
)
from pipeline.room import check_format_room
from pipeline.rowhash import row_checksum
from pipeline.strategies.base import add64

PENDING = "purge_pending.json"
PRESENT = "_present"  # the journal's name for the requested ids some table held


T = TypeVar("T")
R = TypeVar("R")


class FormatVerificationError(RuntimeError):
    pass


def resolve_format_keys(flake: FormatLake, fmt: TableFormat,
                        ids: np.ndarray) -> dict[str, pa.Array]:
    """Key kind -> values to erase, read through the format's current snapshot."""
    lineage = flake.lineage
    keys = {lineage.subject: key_array(pa.array(ids, pa.int64()))}
    for d in lineage.derived:
        found = []
        for b in fmt.scan(flake, d.table, list(dict.fromkeys((d.via_column, d.column)))):
            hit = match(b.column(d.via_column), keys[d.via])
            if pc.any(hit).as_py():
                found.append(b.column(d.column).filter(hit))
        keys[d.name] = key_array(pa.concat_arrays(found) if found else pa.array(
            [], flake_type(flake, fmt, d.table, d.column)))
    return keys


def flake_type(flake: FormatLake, fmt: TableFormat, table: str, column: str) -> pa.DataType:
    for b in fmt.scan(flake, table, [column]):
        return b.schema.field(column).type
    return pa.int64()


def files_holding_keys(flake: FormatLake, fmt: TableFormat,
                       keys: dict[str, pa.Array]) -> list[tuple[Path, int]]:
    """The live data files whose key columns hold a key, and their sizes: what the job will
    rewrite (rows a DELETE already hid are counted: the purge rewrites their files). Read from
    the files' key columns; a file without one of them counts as held (the bound stays safe).
    Where the DELETE rewrites, a file is listed once per rule of its table that still finds
    rows in it: each rule is its own DELETE, which rewrites the previous one's copy (a lineage
    with two key columns on one table)."""
    out = []
    for table in flake.tables():
        rules = [(r.column, keys[r.key]) for r in flake.lineage.rules_for(table)
                 if r.key in keys]
        if not rules:
            continue
        columns = list(dict.fromkeys(c for c, _ in rules))
        paths = [Path(name) for name in fmt.data_files(flake, table)]
        held = per_file(partial(_rules_holding, rules=rules, columns=columns), paths)
        for path, holds in zip(paths, held, strict=True):
            size = path.stat().st_size
            out += [(path, size)] * (holds if fmt.delete_rewrites else min(holds, 1))
    return out


def _rules_holding(path: Path, rules: list[tuple[str, pa.Array]], columns: list[str]) -> int:
    """How many of a table's DELETEs (rules) find rows in one file."""
    with pq.ParquetFile(path) as pf:
        if not set(columns) <= set(pf.schema_arrow.names):
            return len(rules)
        t = _without_views(pf.read(columns=columns, use_threads=False))
    holds, gone = 0, np.zeros(t.num_rows, bool)
    for c, k in rules:  # in the order the DELETEs run: each takes what is left
        hit = match_np(t[c], k) & ~gone
        holds += bool(hit.any())
        gone |= hit
    return holds


def files_to_purge(flake: FormatLake, fmt: TableFormat) -> list[tuple[Path, int]]:
    """The data files the purge will rewrite, and their sizes."""
    return [(p, p.stat().st_size) for t in flake.tables()
            for p in map(Path, fmt.files_to_purge(flake, t))]


def count_matches(flake: FormatLake, fmt: TableFormat, table: str, column: str,
                  keys: pa.Array) -> int:
    return sum(pc.sum(match(b.column(column), keys)).as_py() or 0
               for b in fmt.scan(flake, table, [column]))


def _files_checksum(paths: list[str],
                    drop: tuple[str, pa.Array] | None = None) -> tuple[int, int]:
    """(rows, checksum) of the rows of Parquet files, minus rows holding a key (`drop`). One
    file per core at a time: the reads and the checksum's loops run outside the GIL (read one
    at a time, this check made the verification ~40 % of a Delta job on two cores)."""
    def one(p: str) -> tuple[int, int]:
        t = _without_views(pq.read_table(p, use_threads=False))
        t = t.select(sorted(t.column_names))  # engines may order columns differently
        if drop is not None and drop[0] in t.column_names:
            t = t.filter(pc.invert(match(t[drop[0]], drop[1])))
        return t.num_rows, row_checksum(t)

    rows, total = 0, 0
    for n, checksum in per_file(one, paths):
        rows += n
        total = add64(total, checksum)
    return rows, total


def per_file(fn: Callable[[T], R], paths: list[T]) -> list[R]:
    """`fn` of each file, in order, one file per core at a time: Arrow's reads and the
    compiled loops run outside the GIL."""
    with ThreadPoolExecutor(max(1, min(len(paths), os.cpu_count() or 1))) as pool:
        return list(pool.map(fn, paths))


def _without_views(t: pa.Table) -> pa.Table:
    """View-typed columns as their plain types, so the table can be filtered."""
    if not any(is_view(f.type) for f in t.schema):
        return t
    return pa.table({n: pa.chunked_array([plain_views(c) for c in t[n].chunks])
                     if t[n].num_chunks else t[n] for n in t.column_names})


def _disk_bytes(flake: FormatLake, fmt: TableFormat) -> int:
    """Bytes under the lake root once the format has written what it holds back: DuckLake's
    catalog grows by megabytes when its connection closes (measured before, the logical
    step's figure was ~4 % short). The next call opens the connection again."""
    fmt.release(flake)
    return sum(p.stat().st_size for p in flake.root.rglob("*") if p.is_file())


def logical_step(flake: FormatLake, fmt: TableFormat, keys: dict[str, pa.Array],
                 verify: bool = True, journal: Journal | None = None
                 ) -> tuple[dict, dict, float, float]:
    """DELETE table by table. Returns (per-table results, checks, step seconds, verify s).

    With the job's `journal`, each DELETE's counts are journaled (durably) before it runs,
    once, and its checks' failures after: a re-run of a stopped or failed job checks and
    reports each DELETE against the attempt that first ran it. A DELETE an earlier attempt
    committed deletes nothing the second time: counted from this attempt alone, it would be
    reported as 0 rows, and a failure of the first attempt healed by a re-run that saw
    nothing."""
    tables: dict[str, dict] = {}
    failures: list[str] = []
    step_s = verify_s = 0.0
    earlier = journal.entries() if journal is not None else {}
    for table in flake.tables():
        rules = [r for r in flake.lineage.rules_for(table) if r.key in keys]
        for i, rule in enumerate(rules):
            k = keys[rule.key]
            first = earlier.get(_delete_entry(table, rule.column))
            # the table's next DELETE, if an earlier attempt ran it too: the rows it found
            # are the rows this one left then
            later = (earlier.get(_delete_entry(table, rules[i + 1].column))
                     if first is not None and i + 1 < len(rules) else None)
            t0 = time.perf_counter()
            before = fmt.row_count(flake, table)
            matched = count_matches(flake, fmt, table, rule.column, k) if verify else None
            if first is None and journal is not None:
                journal.log({"path": _delete_entry(table, rule.column), "rows_before": before,
                             "rows_matched": matched}, durable=True)  # before it commits
            t1 = time.perf_counter()
            with orphans_removed_on_failure(flake, fmt, table):
                res = fmt.delete(flake, table, rule.column, k)
            crashpoint("after_delete")
            t2 = time.perf_counter()
            after = fmt.row_count(flake, table)
            entry, rows_failed, count_failed, taken_earlier = _delete_counts(
                table, first, later, before, matched, after, res, verify)
            rewrite_failed: list[str] = []
            if verify:
                left = count_matches(flake, fmt, table, rule.column, k)
                entry["keys_left"] = left
                if left:
                    rows_failed.append(f"{table}: {left} rows still hold a key")
                entry.update(_rewrite_check(res, (rule.column, k), rewrite_failed, table))
            # what a re-run cannot check again (it deletes and rewrites nothing): kept failing
            earlier_failed = (first or {}).get("failures", [])
            sticky = count_failed + rewrite_failed
            failures += [f"{f} (an earlier attempt)" for f in earlier_failed] + rows_failed + \
                sticky
            if verify and journal is not None:
                # checked: the rows this DELETE took (if any) were taken by this attempt
                journal.log({"path": _delete_entry(table, rule.column),
                             "checked": bool(first and first.get("checked")) or
                             not taken_earlier, "failures": [*earlier_failed, *sticky]},
                            durable=bool(sticky))
            verify_s += (t1 - t0) + (time.perf_counter() - t2)
            step_s += t2 - t1
            entry["column"] = rule.column
            tables[table] = _merged(tables[table], entry) if table in tables else entry
    return tables, {"passed": not failures, "failures": failures}, step_s, verify_s


def _delete_entry(table: str, column: str) -> str:
    return f"delete/{table}/{column}"


def _delete_counts(table: str, first: dict | None, later: dict | None, before: int,
                   matched: int | None, after: int, res: StepResult, verify: bool
                   ) -> tuple[dict, list[str], list[str], int]:
    """One DELETE's receipt entry over every attempt that ran it, its failed checks (rows
    left, the DELETE's own count), and the rows earlier attempts' runs of it took. `first`
    is what the first attempt journaled before it (None: this is the first), `later` the
    same for the table's next DELETE if an earlier attempt ran it."""
    first_before = first["rows_before"] if first else before
    first_matched = first["rows_matched"] if first else matched
    # the rows this DELETE left in the attempt that ran it; a re-run's own DELETE (with
    # nothing left for it, if the earlier one committed) comes on top
    left_then = later["rows_before"] if later else after
    deleted = first_before - left_then + (res.rows_deleted if later else 0)
    entry = {"rows_before": first_before, "rows_matched": first_matched, "rows_after": after,
             **res.to_json(), "rows_deleted": deleted}
    taken_earlier = first_before - (left_then if later else before)
    if first is not None:
        entry["this_attempt"] = {"rows_before": before, "rows_matched": matched,
                                 "rows_deleted": res.rows_deleted}
        if taken_earlier and not first.get("checked"):
            # stopped after its DELETE committed, before its checks: the rows it left are
            # checked here, its rewritten files against the ones they replaced never were
            entry["stopped_before_its_checks"] = True
    rows_failed: list[str] = []
    count_failed: list[str] = []
    if verify and first_matched is not None:
        if res.rows_deleted != matched:
            count_failed.append(f"{table}: DELETE reports {res.rows_deleted} rows, "
                                f"{matched} matched")
        if left_then != first_before - first_matched:
            rows_failed.append(f"{table}: {left_then} rows after, expected {first_before} - "
                               f"{first_matched}")
    return entry, rows_failed, count_failed, taken_earlier


def _merged(first: dict, then: dict) -> dict:
    """One table's entry over two DELETEs (a lineage with two key columns on it): counts
    summed, rows before the first and after the last, each DELETE's own entry kept."""
    rules = first.pop("by_column", None) or [dict(first)]
    out = {k: (first.get(k, 0) or 0) + v if isinstance(v, int | float) and
           not isinstance(v, bool) else v for k, v in then.items()}
    out["rows_before"] = rules[0]["rows_before"]
    out["rows_after"] = then["rows_after"]
    out.pop("column", None)
    out["by_column"] = [*rules, then]
    out.update({k: True for k, v in first.items() if v is True})  # a flag of any DELETE
    return out


def _rewrite_check(res: StepResult, drop: tuple[str, pa.Array], failures: list[str],
                   table: str) -> dict:
    """The rewritten files hold the removed files' rows minus the erased ones."""
    if not res.files_removed and not res.files_added:
        return {}
    rows_old, sum_old = _files_checksum(res.files_removed, drop)
    rows_new, sum_new = _files_checksum(res.files_added)
    if (rows_old, sum_old) != (rows_new, sum_new):
        failures.append(f"{table}: rewritten files hold {rows_new} rows (checksum "
                        f"{sum_new:016x}), expected {rows_old} ({sum_old:016x})")
    return {"rewritten_rows_checked": rows_new, "checksum_kept": f"{sum_new:016x}"}


def physical_step(flake: FormatLake, fmt: TableFormat,
                  verify: bool = True) -> tuple[dict, dict, float, float]:
    """The purge: no deleted row's byte left. A purge changes no visible row."""
    tables: dict[str, dict] = {}
    failures: list[str] = []
    step_s = verify_s = 0.0
    for table in flake.tables():
        t0 = time.perf_counter()
        before = fmt.row_count(flake, table)
        snapshot = fmt.snapshot_id(flake)
        files_before = set(fmt.data_files(flake, table))
        t1 = time.perf_counter()
        with orphans_removed_on_failure(flake, fmt, table):
            res = fmt.purge(flake, table)
        t2 = time.perf_counter()
        after = fmt.row_count(flake, table)
        entry = {"rows_before": before, "rows_after": after, **res.to_json()}
        if verify:
            if after != before:
                failures.append(f"{table}: the purge changed the row count {before} → {after}")
            files_after = set(fmt.data_files(flake, table))
            if not res.files_added and files_after != files_before:
                failures.append(f"{table}: the purge changed the live files without a rewrite")
            if res.files_added or res.files_removed:
                entry.update(_purge_rewrite_check(flake, fmt, table, res, snapshot, failures))
        verify_s += (t1 - t0) + (time.perf_counter() - t2)
        step_s += t2 - t1
        tables[table] = entry
    t3 = time.perf_counter()
    tables["(catalog)"] = fmt.finish_purge(flake)
    step_s += time.perf_counter() - t3
    return tables, {"passed": not failures, "failures": failures}, step_s, verify_s


def _purge_rewrite_check(flake: FormatLake, fmt: TableFormat, table: str, res: StepResult,
                         snapshot: int | None, failures: list[str]) -> dict:
    """The files a purge rewrote show the same rows as the files they replace did, read
    through the format at the snapshot before the purge."""
    def summary(batches) -> tuple[int, int]:  # noqa: ANN001
        rows, total = 0, 0
        for b in batches:
            b = b.select(sorted(b.schema.names))
            rows += b.num_rows
            total = add64(total, row_checksum(b))
        return rows, total

    old = summary(fmt.rows_of_files(flake, table, res.files_removed, snapshot))
    new = summary(fmt.rows_of_files(flake, table, res.files_added))
    if old != new:
        failures.append(f"{table}: the purge's rewritten files show {new[0]} rows "
                        f"({new[1]:016x}), the files they replace showed {old[0]} "
                        f"({old[1]:016x})")
    return {"rewritten_rows_checked": new[0], "checksum_kept": f"{new[1]:016x}"}


# --- the jobs -------------------------------------------------------------------------------
def run_format_scrub(flake: FormatLake, request: ErasureRequest, strategy: str, *,
                     logical_only: bool = False, verify: bool = True,
                     receipt_path: Path | None = None) -> tuple[dict, Path]:
    fmt = _format_of(flake, strategy)
    try:
        with lake_lock(flake.root):
            return _scrub(flake, fmt, request, logical_only, verify, receipt_path)
    finally:
        fmt.release(flake)


def _scrub(flake: FormatLake, fmt: TableFormat, request: ErasureRequest, logical_only: bool,
           verify: bool, receipt_path: Path | None) -> tuple[dict, Path]:
    # The request's unfinished job, found by the ids it keeps (whatever the receipt key is
    # now), and any other: refused before the catalog is opened (DuckDB would replay a
    # killed job's WAL into it). A re-run checks each DELETE against the counts its first
    # attempt journaled: another job's DELETEs in between would be taken for its own.
    own = Journal.unfinished_for(flake.root, request.ids, flake.lineage.subject)
    refuse_unfinished(flake.root, [j for j in Journal.unfinished(flake.root)
                                   if own is None or j != own.job_id], flake.lineage.subject)
    started_at = dt.datetime.now(dt.UTC)
    fingerprint = format_fingerprint(flake, fmt)
    # no receipt key is made yet (None without one): nothing is written before the room check
    journal = own or Journal.for_request(flake.root, request.ids, create=False,
                                         fingerprint=fingerprint)
    if journal is not None and journal.finished:  # the lake as it (or a purge after it) left
        kept = receipt_file(flake.root, journal.job_id)
        purged = None
        if not logical_only and journal.job_id in _pending(flake):
            # done with --logical-only, asked now for both steps: the purge it waits for
            # (a failed purge's receipt goes to --receipt too; a done one is replaced below)
            _, purged = _run_purge(flake, fmt.name, verify, receipt_path)
        done = journal.receipt()
        path = write_receipt_copy(done, receipt_path, kept_at=kept) if receipt_path else kept
        # what this command did, for its output (not part of the receipt)
        return {**done, "already_done": True, "purged_now": purged}, path
    t0 = time.perf_counter()
    journaled: dict[str, pa.Array] = {}
    saved: dict = {}
    if own is not None:  # as its first attempt resolved them (a DELETE since took rows)
        journaled, saved = own.load()
        verify = saved.get("verify", verify)  # a job finishes as it started
    if PRESENT in journaled:
        present = journaled.pop(PRESENT).to_numpy()
        keys = journaled
    else:  # (a journal from before the keys were kept resolves them as the lake is now)
        keys = resolve_format_keys(flake, fmt, request.ids)
        present = _present(flake, fmt, request.ids)
    t_room = time.perf_counter()
    rewritten = files_holding_keys(flake, fmt, keys) if fmt.delete_rewrites or \
        not logical_only else []
    if not logical_only:  # the purge also rewrites what earlier logical-only jobs left
        counted = set(rewritten)
        rewritten += [f for f in files_to_purge(flake, fmt) if f not in counted]
    check_format_room(flake.root, rewritten, fmt.name)  # before anything is written
    t1 = time.perf_counter()
    bytes_before = saved.get("bytes_on_disk_before") or _disk_bytes(flake, fmt)
    if own is None:
        journal = Journal.for_request(flake.root, request.ids, fingerprint=fingerprint)
        journal.start({**keys, PRESENT: pa.array(present, pa.int64())},
                      {"format": fmt.name, "verify": verify,
                       "bytes_on_disk_before": bytes_before})
    logical, checks, logical_s, verify_l = logical_step(flake, fmt, keys, verify, journal)
    bytes_logical = _disk_bytes(flake, fmt)
    receipt = _receipt(flake, fmt, request, keys, present, started_at)
    receipt["job_id"] = journal.job_id
    receipt["logical"] = {"tables": logical, "verification": checks, "seconds": logical_s,
                          "verify_seconds": verify_l, "bytes_on_disk_after": bytes_logical}
    receipt["bytes_on_disk_before"] = bytes_before
    receipt["room_checked"] = {"data_files_to_rewrite": len(rewritten),
                               "bytes": sum(b for _, b in rewritten)}
    receipt["timings_s"] = {"resolve": t_room - t0, "room_check": t1 - t_room,
                            "logical": logical_s, "verify": verify_l}
    if not checks["passed"]:
        receipt["state"] = "failed verification (logical step)"
        raise _failed(flake, journal.job_id, receipt, receipt_path, "logical step", checks)
    earlier = {j: r for j, r in _pending(flake).items() if j != journal.job_id}
    if logical_only:
        receipt["physical"] = None
        receipt["state"] = "logically deleted, waiting for `voicescrub purge`"
        _add_pending(flake, journal.job_id, request.requested_at)
    else:
        phys = _purge(flake, fmt, verify)
        receipt["physical"] = phys
        if not phys["verification"]["passed"]:
            receipt["state"] = "failed verification (purge)"
            raise _failed(flake, journal.job_id, receipt, receipt_path, "purge",
                          phys["verification"])
        receipt["timings_s"].update(physical=phys["seconds"],
                                    verify=verify_l + phys["verify_seconds"])
        receipt["state"] = "physically deleted"
        finished = dt.datetime.fromisoformat(phys["finished_at"])
        receipt["delete_persistence_latency_s"] = (finished - request.requested_at
                                                   ).total_seconds()
        # the purge also rewrote what earlier --logical-only jobs left: it finished them
        receipt["purged_pending_jobs"] = _jobs_purged(earlier, finished)
    receipt["timings_s"]["total"] = time.perf_counter() - t0
    receipt["timings_s"] = {k: round(v, 4) for k, v in receipt["timings_s"].items()}
    # the lake as this job leaves it: a re-run of the request is a no-op only while it holds
    receipt["lake_fingerprint"] = format_fingerprint(flake, fmt)
    if failed := failed_attempts(flake.root, journal.job_id):
        receipt["failed_attempts"] = failed  # kept beside it, under these names
    path = _write(flake, journal, receipt, receipt_path)
    if receipt.get("purged_pending_jobs"):
        _mark_purged(flake, receipt["purged_pending_jobs"], receipt["lake_fingerprint"],
                     purged_by=receipt_file(flake.root, journal.job_id).name)
    return receipt, path


def format_fingerprint(flake: FormatLake, fmt: TableFormat) -> str:
    """What a format lake's current snapshot holds, in one digest: every table's data files.
    New data, another job's delete or a purge's rewrite changes it."""
    h = hashlib.sha256()
    for table in flake.tables():
        for path in sorted(fmt.data_files(flake, table)):
            h.update(f"{table}\0{path}\n".encode())
    return h.hexdigest()


def run_purge(flake: FormatLake, strategy: str, *, verify: bool = True,
              receipt_path: Path | None = None) -> tuple[dict, Path]:
    """The physical step for every job waiting for it."""
    with lake_lock(flake.root, "purge"):
        return _run_purge(flake, strategy, verify, receipt_path)


def _run_purge(flake: FormatLake, strategy: str, verify: bool,
               receipt_path: Path | None) -> tuple[dict, Path]:
    fmt = _format_of(flake, strategy)
    # an unfinished job's re-run comes first: a failed one's lost rows are still in the
    # snapshots this purge would drop
    refuse_unfinished(flake.root, Journal.unfinished(flake.root), flake.lineage.subject)
    pending = _pending(flake)
    try:
        check_format_room(flake.root, files_to_purge(flake, fmt), f"{fmt.name}'s purge",
                          "deleted rows")
        phys = _purge(flake, fmt, verify)
        after = format_fingerprint(flake, fmt)  # the lake the purge leaves
    finally:
        fmt.release(flake)
    finished = dt.datetime.fromisoformat(phys["finished_at"])
    name = f"purge-{finished.strftime('%Y%m%dT%H%M%S%fZ')}"
    receipt = {"receipt_version": 1, "kind": "purge", "lake": str(flake.root.resolve()),
               "strategy": fmt.name, "format": flake.format,
               "engine_versions": engine_versions()}
    if not phys["verification"]["passed"]:  # the jobs it served stay pending
        receipt.update(state="failed verification (purge)", physical=phys,
                       jobs=[{"job_id": j, "requested_at": r, "still_pending": True}
                             for j, r in pending.items()])
        raise _failed(flake, name, receipt, receipt_path, "purge", phys["verification"],
                      again="the jobs it served still wait for a purge")
    receipt.update(state="physically deleted", jobs=_jobs_purged(pending, finished),
                   physical=phys)
    path = receipt_file(flake.root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(receipt, indent=1))
    _mark_purged(flake, receipt["jobs"], after, purged_by=path.name)
    if receipt_path is not None:  # once the purge is recorded: a failed copy costs only it
        path = write_receipt_copy(receipt, receipt_path, kept_at=path)
    return receipt, path


def _jobs_purged(pending: dict[str, str], finished: dt.datetime) -> list[dict]:
    """The jobs a purge finished, with their request → physically gone latency."""
    return [{"job_id": j, "requested_at": r,
             "delete_persistence_latency_s": (finished - dt.datetime.fromisoformat(r))
             .total_seconds()} for j, r in pending.items()]


def _mark_purged(flake: FormatLake, jobs: list[dict], after: str, purged_by: str) -> None:
    """Mark the jobs a purge finished physically deleted (their done.json and the receipt
    users read) and clear the pending list."""
    for job in jobs:
        done = flake.root / SCRUB_DIR / job["job_id"] / "done.json"
        if done.exists():
            r = json.loads(done.read_text())
            r["lake_fingerprint"] = after  # the purge finished its job: the lake it left
            r["state"] = "physically deleted"
            r["purged_by"] = purged_by
            r["delete_persistence_latency_s"] = job["delete_persistence_latency_s"]
            done.write_text(json.dumps(r, indent=1))
            kept = receipt_file(flake.root, job["job_id"])
            if kept.exists():  # the copy users read says what the purge did too
                kept.write_text(json.dumps(r, indent=1))
    (flake.root / SCRUB_DIR / PENDING).unlink(missing_ok=True)


def _failed(flake: FormatLake, name: str, receipt: dict, receipt_path: Path | None,
            step: str, checks: dict,
            again: str = "re-run the same command to finish the job"
            ) -> FormatVerificationError:
    """The error for a step that failed verification, once its receipt is kept (under a
    name of its own) and copied to `--receipt`."""
    where = write_failed_receipt(flake.root, name, receipt, receipt_path)
    return FormatVerificationError(f"{step} failed verification: {checks['failures'][:3]} "
                                   f"({where}); {again}")


def _purge(flake: FormatLake, fmt: TableFormat, verify: bool) -> dict:
    """The physical step; its verification is checked by the caller (which writes a receipt
    of the failure first)."""
    tables, checks, seconds, verify_s = physical_step(flake, fmt, verify)
    return {"tables": tables, "verification": checks, "seconds": seconds,
            "verify_seconds": verify_s, "bytes_on_disk_after": _disk_bytes(flake, fmt),
            "finished_at": dt.datetime.now(dt.UTC).isoformat()}


def _format_of(flake: FormatLake, strategy: str) -> TableFormat:
    if flake.format != strategy:
        raise ValueError(f"{flake.root} is a {flake.format} lake: erase with --strategy "
                         f"{flake.format}, not {strategy}")
    return get_format(strategy)


def _present(flake: FormatLake, fmt: TableFormat, ids: np.ndarray) -> np.ndarray:
    subject = flake.lineage.subject
    keys = key_array(pa.array(ids, pa.int64()))
    seen = []
    for rule in flake.lineage.rules:
        if rule.key == subject:
            for b in fmt.scan(flake, rule.table, [rule.column]):
                col = b.column(rule.column)
                seen.append(col.filter(match(col, keys)).to_numpy())
            break  # the first table holding the subject (customers) lists every customer
    return np.unique(np.concatenate(seen)) if seen else np.array([], np.int64)


def _receipt(flake: FormatLake, fmt: TableFormat, request: ErasureRequest,
             keys: dict[str, pa.Array], present: np.ndarray, started_at: dt.datetime) -> dict:
    import hashlib

    secret = lake_secret(flake.root)
    unknown = np.setdiff1d(request.ids, present)
    return {
        "receipt_version": 1, "job_id": None, "lake": str(flake.root.resolve()),
        "strategy": fmt.name, "strategy_description": fmt.description,
        "format": flake.format, "engine_versions": engine_versions(),
        "requested_at": request.requested_at.isoformat(), "started_at": started_at.isoformat(),
        "request": {
            "ids": int(len(request.ids)), "duplicates_folded": request.duplicates,
            "id_hash": "hmac-sha256 (first 32 hex) keyed by the lake's receipt key",
            "receipt_key_id": hashlib.sha256(secret).hexdigest()[:12],
            "ids_hashed": keyed_hashes(secret, request.ids),
            "unknown_ids": int(len(unknown)),
            "unknown_ids_hashed": keyed_hashes(secret, unknown)},
        "keys_resolved": [{"key": k, "count": int(len(v))} for k, v in keys.items()],
    }


def _write(flake: FormatLake, journal: Journal, receipt: dict, extra: Path | None) -> Path:
    receipt["job_id"] = journal.job_id
    receipt["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
    journal.dir.mkdir(parents=True, exist_ok=True)
    journal.finish(receipt)
    path = receipt_file(flake.root, journal.job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(receipt, indent=1))
    if extra is not None:
        return write_receipt_copy(receipt, extra, kept_at=path)
    return path


def _pending(flake: FormatLake) -> dict[str, str]:
    p = flake.root / SCRUB_DIR / PENDING
    return json.loads(p.read_text()) if p.exists() else {}


def _add_pending(flake: FormatLake, job_id: str, requested_at: dt.datetime) -> None:
    pending = _pending(flake)
    pending[job_id] = requested_at.isoformat()
    d = flake.root / SCRUB_DIR
    d.mkdir(exist_ok=True)
    tmp = d / (PENDING + ".tmp")
    tmp.write_text(json.dumps(pending))
    shutil.move(tmp, d / PENDING)
