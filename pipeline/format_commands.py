"""CLI commands of the table formats: convert, purge, and `scrub` on a format lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from generators.lake import disk_full
from pipeline.commands import (
    _fail,
    _human,
    _plural,
    check_output_file,
    err,
    out,
    phase_progress,
)
from pipeline.intake import ErasureRequest, RequestError
from pipeline.lake import Lake, LakeError


def _open_described(root: Path, what: str) -> Lake:
    """A lake that must carry _lake.json (these commands take no --lineage)."""
    if not Path(root).is_dir():
        raise LakeError(f"{root} does not exist or is not a directory")
    if not (Path(root) / "_lake.json").is_file():
        raise LakeError(f"{root} has no _lake.json: {what}")
    return Lake.open(root)


def check_format_strategy(lake: Lake, strategy: str, dry_run: bool) -> None:
    """A format strategy needs a lake of its format, and a format lake needs its strategy."""
    from pipeline import formats

    lake_format = (lake.manifest or {}).get("format")
    if lake_format is None and strategy not in formats.available():
        # `purge --strategy arrow` on a Parquet lake: copy-on-write has nothing to purge
        raise LakeError(f"{lake.root} is a Parquet lake: its scrubs rewrite files and leave "
                        f"nothing to purge (purge is for table-format lakes: "
                        f"{', '.join(formats.available())})")
    if lake_format is None:
        raise LakeError(f"{lake.root} is a Parquet lake; the {strategy} strategy erases from a "
                        f"{strategy} lake: build one with `voicescrub convert --lake {lake.root} "
                        f"--to {strategy} --out DIR` and scrub DIR")
    if strategy != lake_format:
        raise LakeError(f"{lake.root} is a {lake_format} lake: erase with --strategy "
                        f"{lake_format}, not {strategy}")
    if dry_run:
        raise LakeError("--dry-run plans copy-on-write rewrites; a table format plans its "
                        "own DELETE")


def _format_lake(lake: Lake):  # noqa: ANN202
    from pipeline.formats import FormatLake

    return FormatLake.open(lake.root)


def scrub_format(lake: Lake, request: ErasureRequest, strategy: str, logical_only: bool,
                 receipt: Path | None) -> None:
    from pipeline.format_scrub import FormatVerificationError, run_format_scrub
    from pipeline.receipt import ReceiptNotCopied

    flake = _format_lake(lake)
    with err.status(f"{strategy}: {'logical delete' if logical_only else 'delete and purge'}"):
        try:
            r, path = run_format_scrub(flake, request, strategy, logical_only=logical_only,
                                       receipt_path=receipt)
        except (FormatVerificationError, ReceiptNotCopied) as e:
            raise _fail(str(e), 1) from None
        except Exception as e:
            if not disk_full(e):
                raise
            raise _fail(_full_disk(e, lake.root, "scrub"), 1) from None
    lg = r["logical"]
    rows = sum(t["rows_deleted"] for t in lg["tables"].values())
    if r.get("already_done") and r.get("purged_now"):
        out.print(f"job {r['job_id']} deleted these customers' rows logically on "
                  f"{r['finished_at']} ({rows:,} rows; nothing is left to delete) and was "
                  f"waiting for the purge, which ran now: {r['purged_now']}")
        out.print(f"state: {r['state']}; receipt: {path}")
        return
    if r.get("already_done"):
        out.print(f"job {r['job_id']} already finished on {r['finished_at']} ({rows:,} rows "
                  f"deleted), and the lake is as it left it: nothing to delete")
        out.print(f"state: {r['state']}; receipt: {path}")
        return
    who = _plural(r['request']['ids'], 'customer')
    out.print(f"{strategy}: deleted {rows:,} rows of {who} ({r['request']['unknown_ids']:,} not "
              f"found in any table) in {lg['seconds']:.1f} s (logical); "
              f"{_human(lg['bytes_on_disk_after'])} on disk")
    if r.get("physical"):
        ph = r["physical"]
        out.print(f"purged in {ph['seconds']:.1f} s (physical); "
                  f"{_human(ph['bytes_on_disk_after'])} on disk; request → physically gone "
                  f"{r['delete_persistence_latency_s']:.1f} s")
    else:
        out.print("logically deleted: the old bytes stay on disk until "
                  f"`voicescrub purge --lake {lake.root} --strategy {strategy}`")
    out.print(f"verification passed; receipt: {path}")


def _full_disk(e: Exception, root: Path, what: str) -> str:
    """A full disk during a format's DELETE or purge, in one line. Each table stays at its
    last committed version (the formats commit atomically), and the DELETE and the purge are
    idempotent, so the same command finishes the job."""
    removed = getattr(e, "orphans_removed", 0)  # see pipeline.formats.orphans
    cleaned = (f"the {removed} data file(s) the failed write had written were removed" if removed
               else "files a failed write left behind are removed by `voicescrub purge`")
    return (f"the filesystem of {root} is full ({' '.join(str(e).split())[:200]}): the {what} "
            "stopped, each table at its last committed version. Free some space (a format "
            "rewrites every file holding a customer's row before it lets go of the old one; "
            f"{cleaned}) and re-run the same command to finish it")


def convert(
    lake: Annotated[Path, typer.Option(help="Generated Parquet lake")],
    to: Annotated[str, typer.Option(help="Table format: delta, iceberg or ducklake")],
    out_dir: Annotated[Path, typer.Option("--out", help="Root of the new format lake")],
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out")] = False,
) -> None:
    """Load a generated lake into a table format (all tables, same rows and partitioning)."""
    from generators.lake import GenerationStopped
    from pipeline.formats import available
    from pipeline.formats.convert import ConvertError, ConvertOutOfRoom, check_target
    from pipeline.formats.convert import convert as run_convert
    from pipeline.signals import exit_code_of, terminate_as_interrupt

    try:
        if to not in available():
            raise ConvertError(f"--to must be one of {', '.join(available())}, got {to!r}")
        src = _open_described(lake, "convert reads a lake `voicescrub generate` wrote")
        check_target(out_dir, force, src.root)
    except (ConvertError, LakeError) as e:
        raise _fail(str(e)) from None
    with phase_progress("convert") as progress:
        try:
            with terminate_as_interrupt():
                flake = run_convert(src, to, out_dir, force=force, progress=progress)
        except (ConvertError, LakeError) as e:
            raise _fail(str(e)) from None
        except ConvertOutOfRoom as e:
            raise _fail(str(e), 1) from None
        except GenerationStopped as e:
            raise _fail(str(e), e.exit_code) from None
        except (KeyboardInterrupt, SystemExit) as e:  # before anything was written
            raise _fail("interrupted: nothing was written", exit_code_of(e)) from None
    m = flake.manifest
    rows = sum(t["rows_stored"] for t in m["tables"].values())
    out.print(f"{to} lake at {out_dir}: {len(m['tables'])} tables, {rows:,} rows (replicas "
              f"included) in {m['conversion_seconds']:.1f} s")


def purge(
    lake: Annotated[Path, typer.Option(help="Format lake root")],
    strategy: Annotated[str, typer.Option(help="The lake's format: delta, iceberg, ducklake")],
    receipt: Annotated[Path | None, typer.Option(help="Also write the receipt here")] = None,
) -> None:
    """The physical step: remove every byte the logical deletes left on disk."""
    from pipeline.format_scrub import FormatVerificationError, run_purge
    from pipeline.receipt import ReceiptNotCopied

    try:
        check_output_file(receipt, "--receipt", lake)
        the_lake = _open_described(lake, "purge works on a lake `voicescrub convert` wrote")
        check_format_strategy(the_lake, strategy, False)
    except (LakeError, RequestError) as e:
        raise _fail(str(e)) from None
    with err.status(f"{strategy}: purge"):
        try:
            r, path = run_purge(_format_lake(the_lake), strategy, receipt_path=receipt)
        except LakeError as e:
            raise _fail(str(e)) from None
        except (FormatVerificationError, ReceiptNotCopied) as e:
            raise _fail(str(e), 1) from None
        except Exception as e:
            if not disk_full(e):
                raise
            raise _fail(_full_disk(e, the_lake.root, "purge"), 1) from None
    ph = r["physical"]
    gone = sum((t or {}).get("files_deleted_from_disk", 0) or 0 for t in ph["tables"].values())
    out.print(f"{strategy}: purged in {ph['seconds']:.1f} s; {gone:,} data/delete files removed "
              f"from disk; {_human(ph['bytes_on_disk_after'])} on disk; "
              f"{len(r['jobs'])} job(s) now physically deleted")
    for j in r["jobs"]:
        out.print(f"  job {j['job_id']}: request → physically gone "
                  f"{j['delete_persistence_latency_s']:.1f} s")
    out.print(f"verification passed; receipt: {path}")
