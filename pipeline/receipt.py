"""The receipt: what a scrub touched, what it cost, how it was verified — and no raw id.

Customer ids appear only as keyed hashes (HMAC-SHA256 with the lake's receipt key), so the
receipt cannot become the next copy of the data, yet an operator holding the key can answer
"was customer X in this job?".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata as md
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.journal import keyed_hashes, lake_secret
from pipeline.lake import SCRUB_DIR, Lake, LakeError
from pipeline.rowhash import METHOD as CHECKSUM_METHOD

if TYPE_CHECKING:
    from pipeline.intake import ErasureRequest
    from pipeline.scrub import ScrubPlan
    from pipeline.strategies.base import RewriteResult, Strategy

ENGINES = ("duckdb", "polars", "pyarrow", "numpy", "numba", "deltalake", "pyiceberg")


def engine_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ENGINES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def build_receipt(lake: Lake, request: ErasureRequest, plan: ScrubPlan, strategy: Strategy,
                  results: dict[str, RewriteResult], changed: dict[str, tuple[int, int]],
                  checks: dict, timings: dict, *, started_at: dt.datetime, resumed: bool,
                  verify: str) -> dict:
    secret = lake_secret(lake.root)
    unknown = np.setdiff1d(request.ids, plan.present_ids)
    finished_at = dt.datetime.now(dt.UTC)
    tables: dict[str, dict[str, dict]] = {}
    for fp in plan.files:
        f = fp.file
        t = tables.setdefault(f.table, {}).setdefault(f.region or "-", {
            "files": 0, "files_scanned": 0, "files_skipped_by_bucket": 0,
            "files_skipped_by_stats": 0, "files_skipped_by_bloom": 0,
            "row_groups_skipped_by_bloom": 0, "files_rewritten": 0, "row_groups_total": 0,
            "row_groups_with_keys": 0, "rows_before": 0, "rows_erased": 0, "rows_after": 0,
            "bytes_scanned": 0, "bytes_read": 0, "bytes_written": 0, "replica_files": 0,
        })
        t["files"] += 1
        t["replica_files"] += int(f.origin != f.region)
        t["row_groups_total"] += fp.row_groups_total
        t["rows_before"] += f.rows
        t["bytes_scanned"] += fp.bytes_scanned
        t["row_groups_skipped_by_bloom"] += fp.row_groups_pruned_by_bloom
        if fp.pruned_by == "bucket":
            t["files_skipped_by_bucket"] += 1
        elif fp.pruned_by == "stats":
            t["files_skipped_by_stats"] += 1
        elif fp.pruned_by == "bloom":
            t["files_skipped_by_bloom"] += 1
        elif fp.pruned_by is None:
            t["files_scanned"] += 1
        if fp.touched:
            t["files_rewritten"] += 1
            t["row_groups_with_keys"] += len(fp.row_groups)
            t["rows_erased"] += fp.rows_matched
            t["bytes_read"] += f.bytes
            t["bytes_written"] += changed.get(f.path, (0, 0))[1]
            t["rows_after"] += changed.get(f.path, (f.rows - fp.rows_matched, 0))[0]
        else:
            t["rows_after"] += f.rows
    totals = {k: sum(r[k] for regions in tables.values() for r in regions.values())
              for k in ("files", "files_rewritten", "rows_erased", "bytes_scanned",
                        "bytes_read", "bytes_written")}
    # Order-insensitive checksums add up: one per table and region of the rewritten files.
    sums: dict[str, int] = {}
    for fp in plan.files:
        r = results.get(fp.file.path)
        if r is not None:
            k = f"{fp.file.table}/{fp.file.region or '-'}"
            sums[k] = (sums.get(k, 0) + r.checksum_kept) & 0xFFFFFFFFFFFFFFFF
    totals["checksum_kept"] = {k: f"{v:016x}" for k, v in sorted(sums.items())}
    return {
        "receipt_version": 1,
        "job_id": None,  # set by write_receipt
        "lake": str(lake.root.resolve()),
        "strategy": strategy.name,
        "strategy_description": strategy.description,
        "engine_versions": engine_versions(),
        "requested_at": request.requested_at.isoformat(),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "delete_persistence_latency_s": (finished_at - request.requested_at).total_seconds(),
        "resumed": resumed,
        "request": {
            "source": request.source if not request.source.startswith("--ids") else "--ids",
            "ids": int(len(request.ids)),
            "duplicates_folded": request.duplicates,
            "id_hash": "hmac-sha256 (first 32 hex) keyed by the lake's receipt key",
            "receipt_key_id": hashlib.sha256(secret).hexdigest()[:12],
            "ids_hashed": keyed_hashes(secret, request.ids),
            "unknown_ids": int(len(unknown)),
            "unknown_ids_hashed": keyed_hashes(secret, unknown),
        },
        # a list, not {kind: count}: `"customer_id": 4` would read like a customer id
        "keys_resolved": [{"key": k, "count": int(len(v))} for k, v in plan.keys.items()],
        "tables": tables,
        "totals": {k: v for k, v in totals.items() if k != "checksum_kept"},
        "checksums_kept_rows": totals["checksum_kept"],
        "checksum_method": CHECKSUM_METHOD,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "verification": {"mode": verify, **checks},
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
    }


class ReceiptNotCopied(RuntimeError):
    """The job is done and its receipt kept in the lake; only the `--receipt` copy failed."""


def write_receipt_copy(receipt: dict, path: Path, kept_at: Path | None = None) -> Path:
    """The receipt, also at a path the user named (`--receipt`). Written once the job is
    finished: a path that fails now (checked writable before the job) costs only the copy."""
    try:
        Path(path).write_text(json.dumps(receipt, indent=1))
    except OSError as e:
        where = f"; the receipt is kept at {kept_at}" if kept_at is not None else ""
        raise ReceiptNotCopied(f"the job finished{where}, but --receipt {path} could not be "
                               f"written: {e.strerror or e}") from None
    return Path(path)


def write_failed_receipt(root: Path, name: str, receipt: dict, copy: Path | None) -> str:
    """Keep the receipt of an attempt that failed verification under a name of its own
    (`<name>.failed-<n>.json`: a re-run that finishes the job writes `<name>.json` and lists
    these), copy it to `--receipt` (what a failed job did is what its user most needs), and
    say where both are, for the error."""
    n = len(failed_attempts(root, name)) + 1
    kept = receipt_file(root, f"{name}.failed-{n}")
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(receipt, indent=1))
    where = f"receipt: {kept}"
    if copy is not None:
        try:
            where += f", copied to {write_receipt_copy(receipt, copy)}"
        except ReceiptNotCopied:
            where += f"; --receipt {copy} could not be written"
    return where


def failed_attempts(root: Path, name: str) -> list[str]:
    """The receipts of the attempts of job (or purge) `name` that failed verification."""
    found = receipt_file(root, name).parent.glob(f"{name}.failed-*.json")
    return sorted((p.name for p in found), key=lambda n: int(n.rsplit("-", 1)[1][:-5]))


def refuse_unfinished(root: Path, others: list[str], subject: str) -> None:
    """Refuse a job while another job on the lake is unfinished (killed, or failed
    verification): its own command must finish it first."""
    if not others:
        return
    how = "failed verification" if failed_attempts(root, others[0]) else "was interrupted"
    raise LakeError(
        f"job {others[0]} on this lake {how} and has not finished: re-run the command that "
        f"started it to finish it first (its customer ids are in "
        f"{SCRUB_DIR}/{others[0]}/keys-{subject}.parquet)")


def receipt_file(root: Path, name: str) -> Path:
    """Where the lake at `root` keeps a receipt (a job's, named by its id; or a purge's)."""
    return root / SCRUB_DIR / "receipts" / f"{name}.json"


def write_receipt(lake: Lake, job_id: str, receipt: dict) -> Path:
    """The receipt where the lake keeps it (`_scrub/receipts/<job id>.json`)."""
    receipt["job_id"] = job_id
    text = json.dumps(receipt, indent=1)
    path = receipt_file(lake.root, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
