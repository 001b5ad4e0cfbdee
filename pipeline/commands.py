"""CLI commands of the scrub: scrub, strategies, audit."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.intake import ErasureRequest, RequestError, parse_ids, read_request
from pipeline.lake import Lake, LakeError
from pipeline.signals import exit_code_of, terminate_as_interrupt

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _request(customers: Path | None, ids: str | None) -> ErasureRequest:
    if (customers is None) == (ids is None):
        raise RequestError("give exactly one of --customers FILE or --ids 1,2,3")
    return read_request(customers) if customers is not None else parse_ids(ids or "")


def check_output_file(path: Path | None, flag: str, lake: Path | None = None) -> None:
    """Refuse, before any work, an output path that cannot be written (a job must not run to
    its end and then fail on its receipt), or that lies inside the lake (it would write over
    `_lake.json` or a data file, or leave a file every audit then reads)."""
    if path is None:
        return
    path = Path(path)
    if lake is not None:
        root = Path(lake).resolve()
        where = path.resolve()
        if where == root or root in where.parents:
            raise RequestError(f"{flag} {path} is inside the lake {lake}: give a path outside "
                               "it (the lake keeps its own receipts under _scrub/receipts/)")
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise RequestError(f"{flag} {path} is a directory: give a file path")
    if not parent.is_dir():
        raise RequestError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RequestError(f"{flag} {path} cannot be written")
    # os.access says yes to root everywhere: try it (procfs, sysfs, a root-squashed NFS
    # mount, a read-only filesystem refuse only the real thing)
    try:
        if path.exists():
            with open(path, "ab"):  # appends nothing: the file is unchanged
                pass
        else:
            fd, probe = tempfile.mkstemp(dir=parent, prefix=".voicescrub-probe-")
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise RequestError(f"{flag} {path} cannot be written: {e.strerror or e}") from None


def write_json(data: dict, path: Path) -> bool:
    """`--json PATH`: the JSON to the file (True), or with `-` to stdout and nothing else
    (False: the caller prints no table). A file that cannot be written exits 2, not to be
    read as an audit's "residue found" (1)."""
    text = json.dumps(data, indent=1)
    if str(path) == "-":
        typer.echo(text)
        return False
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise _fail(f"--json {path} could not be written: {e.strerror or e}") from None
    return True


def check_workers(workers: int) -> None:
    if workers < 0:
        raise RequestError(f"--workers must be 0 (automatic) or more, got {workers}")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} PB"


@contextmanager
def phase_progress(first: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr for long work; yields progress(phase, done, total)."""
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task(first, total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        yield progress


def print_plan(summary: dict, lake: Lake) -> None:
    """The dry run's plan (`ScrubPlan.summary`) as a table, one row per table and region; a
    "skipped" column only for the means that skipped a file (bucket routing, row-group
    statistics, bloom filters, no key for the table), so it fits a terminal. Numbers are
    never cut: where the width runs short, headers and names are."""
    from pipeline.scrub import SKIPPED_BY

    means = [m for m in SKIPPED_BY if summary["totals"][f"skipped_by_{m}"]]
    t = Table(title=f"scrub plan for {lake.root} (dry run: nothing touched)",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
              caption="skipped: without reading data, by the means named; scanned: key "
              "columns read" + (", none skipped" if not means else ""))
    keys = ["files", *(f"skipped_by_{m}" for m in means), "scanned", "to_rewrite",
            "rows_to_erase"]
    headers = ["files", *(f"skipped\n{m.replace('_', ' ')}" for m in means), "scanned",
               "to\nrewrite", "rows to\nerase", "bytes to\nrewrite"]

    def cells(row: dict) -> list[str]:
        return [*(f"{row[k]:,}" for k in keys), _human(row["bytes_to_rewrite"])]

    rows = [(r["table"], r["region"], *cells(r)) for r in summary["by_table_region"]]
    total = ("all", "", *cells(summary["totals"]))
    t.add_column("table", no_wrap=True)
    t.add_column("region", no_wrap=True)
    for n, header in enumerate(headers, start=2):  # (a row group count is in --json)
        t.add_column(header, justify="right", no_wrap=True,
                     min_width=max(len(r[n]) for r in [*rows, total]))
    for r in rows:
        t.add_row(*r)
    t.add_section()
    t.add_row(*total, style="bold")
    out.print(t)
    keys_line = ", ".join(f"{k}: {n:,}" for k, n in summary["keys"].items())
    out.print(f"keys resolved — {keys_line}")
    out.print(f"{_plural(summary['customers_requested'], 'customer')} requested, "
              f"{summary['customers_not_found']:,} not found in any table")


def scrub(
    lake: Annotated[Path, typer.Option(help="Lake root")],
    strategy: Annotated[str, typer.Option(help="Strategy (see `voicescrub strategies`)")]
    = "arrow",
    customers: Annotated[Path | None, typer.Option(
        help="Request file: CSV, Parquet or JSON-lines with customer_id[, requested_at]")]
    = None,
    ids: Annotated[str | None, typer.Option(help="Customer ids, comma-separated")] = None,
    receipt: Annotated[Path | None, typer.Option(help="Also write the receipt here")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan, touch nothing")] = False,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="With --dry-run: write the plan as JSON to this file ('-': stdout)")]
    = None,
    workers: Annotated[int, typer.Option(help="Files in flight; 0 = cores + 1")] = 0,
    verify: Annotated[str, typer.Option(help="default (footers + streamed checksums) or deep "
                                             "(re-read every written file, rescan the lake)")]
    = "default",
    lineage: Annotated[Path | None, typer.Option(
        help="Lineage spec (JSON) for a lake without _lake.json")] = None,
    logical_only: Annotated[bool, typer.Option(
        help="Table formats: run the format's DELETE only; `voicescrub purge` later")] = False,
) -> None:
    """Erase customers from every table, region and replica of the lake."""
    from generators.lake import disk_full
    from pipeline import formats, strategies
    from pipeline.commit import CommitError
    from pipeline.damage import UnreadableFiles
    from pipeline.receipt import ReceiptNotCopied
    from pipeline.scrub import (
        JobInterrupted,
        JobNotStarted,
        VerificationError,
        plan_scrub,
        run_scrub,
    )

    try:
        if verify not in ("default", "deep"):
            raise RequestError(f"--verify must be default or deep, got {verify!r}")
        check_workers(workers)
        if json_out is not None and not dry_run:
            raise RequestError("--json writes a dry run's plan: add --dry-run (a job's "
                               "receipt is JSON already: --receipt FILE)")
        if receipt is not None and dry_run:
            raise RequestError("a dry run has no receipt: use --json FILE for its plan")
        check_output_file(receipt, "--receipt", lake)
        if json_out is not None and str(json_out) != "-":
            check_output_file(json_out, "--json", lake)
        request = _request(customers, ids)
        known = [*strategies.available(), *formats.available()]
        if strategy not in known:
            raise RequestError(f"unknown strategy {strategy!r}; available: {', '.join(known)}")
        the_lake = Lake.open(lake, lineage)
        lake_format = (the_lake.manifest or {}).get("format")
        if lake_format or strategy in formats.available():
            from pipeline.format_commands import check_format_strategy

            check_format_strategy(the_lake, strategy, dry_run)
        elif logical_only:
            raise LakeError("--logical-only is for the table-format strategies (delta, "
                            "iceberg, ducklake): copy-on-write has no logical step")
        if lake_format:
            from pipeline.format_commands import scrub_format

            # options a format's own DELETE has no use for: refused, not silently ignored
            unused = [flag for flag, given in (
                ("--verify deep", verify == "deep"), ("--workers", workers != 0),
                ("--lineage", lineage is not None)) if given]
            if unused:
                raise RequestError(
                    f"{' and '.join(unused)}: not for a {lake_format} lake (its DELETE runs "
                    "in the format's engine, is verified through the format, and the lineage "
                    "is the one `convert` recorded)")

            scrub_format(the_lake, request, strategy, logical_only, receipt)
            return
        if dry_run:
            the_lake.validate()
    except (RequestError, LakeError) as e:
        raise _fail(str(e)) from None
    workers = workers or (os.cpu_count() or 1) + 1  # fsync waits leave a core idle otherwise
    if dry_run:
        try:
            with terminate_as_interrupt():
                plan = plan_scrub(the_lake, request, workers, trust_metadata=verify != "deep")
        except LakeError as e:
            raise _fail(str(e)) from None
        except (KeyboardInterrupt, SystemExit) as e:
            raise _fail("interrupted: a dry run writes nothing", code=exit_code_of(e)) from None
        summary = {"lake": str(the_lake.root), "dry_run": True,
                   "verify": verify, **plan.summary(request.ids)}
        if json_out is None:
            print_plan(summary, the_lake)
            return
        if not write_json(summary, json_out):
            return
        t = summary["totals"]
        out.print(f"plan written to {json_out}: {t['to_rewrite']:,} of {t['files']:,} files to "
                  f"rewrite, {t['rows_to_erase']:,} rows to erase (dry run: nothing touched)")
        return
    with phase_progress("resolve") as progress:
        try:
            with terminate_as_interrupt():  # SIGTERM stops between files, as Ctrl-C does
                outcome = run_scrub(the_lake, request, strategy, workers=workers,
                                    verify=verify, receipt_path=receipt, progress=progress)
        except (JobInterrupted, JobNotStarted) as e:
            raise _fail(str(e), code=e.exit_code) from None
        except (KeyboardInterrupt, SystemExit) as e:  # before or after the files' rewrites
            raise _fail("interrupted: if the job had started it is unfinished (every file "
                        "whole, old or new); re-run the same command to finish it",
                        code=exit_code_of(e)) from None
        except UnreadableFiles as e:
            # after the job started, the lake is half done until it finishes: exit 1
            raise _fail(str(e), code=2 if e.job is None else 1) from None
        except LakeError as e:
            raise _fail(str(e)) from None
        except CommitError as e:
            raise _fail(f"{e} — the file is unchanged; re-run the same command to finish the "
                        "job", code=1) from None
        except VerificationError as e:
            raise _fail(str(e), code=1) from None
        except ReceiptNotCopied as e:
            raise _fail(str(e), code=1) from None
        except OSError as e:
            if not disk_full(e):
                raise
            where = f"the filesystem of {e.filename}" if e.filename else "the lake's filesystem"
            raise _fail(f"{where} is full ({e.strerror or e}): the job stopped with every "
                        "file whole, old or new; free some space and re-run the same command "
                        "to finish it", code=1) from None
    r = outcome.receipt
    if outcome.already_done:
        out.print(f"job {r['job_id']} already finished on {r['finished_at']} "
                  f"(strategy {r.get('strategy')}), and the lake is as it left it: nothing to do")
        if outcome.receipt_path is not None:
            out.print(f"receipt: {outcome.receipt_path}")
        return
    first = outcome.resumed_first
    if first is not None:
        f = first.receipt
        out.print(f"finished interrupted job {f['job_id']} with footer verification, on the "
                  f"keys it resolved when it started: {f['totals']['rows_erased']:,} rows "
                  f"erased; receipt: {first.receipt_path}")
        out.print(f"then job {r['job_id']} re-resolved the keys, planned and verified trusting "
                  "no metadata (--verify deep):")
    t = r["totals"]
    out.print(f"erased {t['rows_erased']:,} rows of {_plural(r['request']['ids'], 'customer')} "
              f"({r['request']['unknown_ids']:,} not found in any table) with {r['strategy']}: "
              f"{t['files_rewritten']:,} of {t['files']:,} files rewritten, "
              f"{_human(t['bytes_read'])} read, {_human(t['bytes_written'])} written, "
              f"{r['timings_s']['total']:.1f} s; verification "
              f"{'passed' if r['verification']['passed'] else 'FAILED'}")
    out.print(f"receipt: {outcome.receipt_path}")


def list_strategies() -> None:
    """List the strategies that `scrub --strategy` accepts."""
    from pipeline import formats, strategies

    t = Table()
    t.add_column("name")
    t.add_column("kind")
    t.add_column("engine")
    t.add_column("what it does")
    for name, cls in strategies.available().items():
        t.add_row(name, "copy-on-write", cls.engine, cls.description)
    for name, cls in formats.available().items():
        t.add_row(name, "table format", cls.engine, cls.description)
    out.print(t)
    out.print("table formats erase from a converted lake (voicescrub convert), in two steps: "
              "scrub --logical-only, then purge")


def audit(
    lake: Annotated[Path, typer.Option(help="Lake root")],
    customers: Annotated[Path | None, typer.Option(help="Request file of customer ids")] = None,
    ids: Annotated[str | None, typer.Option(help="Customer ids, comma-separated")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the report as JSON to this file ('-': stdout, instead of the "
                       "tables)")]
    = None,
    workers: Annotated[int, typer.Option(help="Files read at once; 0 = all cores")] = 0,
    lineage: Annotated[Path | None, typer.Option(help="Lineage spec for a lake without "
                                                      "_lake.json")] = None,
    limit: Annotated[int, typer.Option(help="Findings listed on screen; 0 = all")] = 20,
    names: Annotated[bool, typer.Option(
        "--names/--no-names", help="Search full names and street addresses in free text "
        "(possible mentions, never residue; the costliest part of an audit)")] = True,
) -> None:
    """Read every file under the lake root: exit 1 on any trace of the customers, or on a file
    it could not read (an encrypted archive member, a damaged file)."""
    from pipeline.audit import run_audit
    from pipeline.audit_unpack import UnpackError

    try:
        check_workers(workers)
        if limit < 0:
            raise RequestError(f"--limit must be 0 or more, got {limit}")
        limit = limit or sys.maxsize  # 0: all, as `query --limit 0`
        if json_out is not None and str(json_out) != "-":
            check_output_file(json_out, "--json", lake)
        request = _request(customers, ids)
        the_lake = Lake.open(lake, lineage)
    except (RequestError, LakeError) as e:
        raise _fail(str(e)) from None
    try:
        with terminate_as_interrupt():  # SIGTERM unwinds: the unpacked copies are removed
            report = run_audit(the_lake, request.ids, workers or os.cpu_count() or 1,
                               names=names)
    except (LakeError, UnpackError) as e:  # e.g. a table-format lake that was moved or copied
        raise _fail(str(e)) from None
    if json_out is not None and not write_json(report.to_json(), json_out):
        raise typer.Exit(1 if report.residue or report.unreadable else 0)  # stdout: JSON only
    residue = report.residue
    if residue:
        t = Table(title="residue")
        for col in ("file", "column", "kind", "rows", "visible"):
            t.add_column(col)
        for f in residue[:limit]:
            t.add_row(f.path, f.column, f.kind, f"{f.rows:,}", "yes" if f.visible else "no")
        out.print(t)
        if len(residue) > limit:
            out.print(f"… and {len(residue) - limit:,} more findings (--json for all)")
    name_rows = sum(f.rows for f in report.findings if f.possible and f.kind == "name")
    address_rows = sum(f.rows for f in report.findings if f.possible and f.kind == "address")
    never = f" ({report.never_in_lake:,} never in this lake)" if report.never_in_lake else ""
    out.print(f"read {report.files_read:,} files ({_human(report.bytes_read)}) for "
              f"{_plural(report.customers, 'customer')}{never}: "
              f"logically visible {report.visible_rows:,}, "
              f"physically present but hidden {report.hidden_rows:,}, "
              + (f"possible mentions: names {name_rows:,}, street addresses "
                 f"{address_rows:,} (not unique to a customer; not residue)" if names else
                 "names and street addresses not searched (--no-names)"))
    if report.unreadable:
        out.print(f"[bold yellow]{_plural(len(report.unreadable), 'thing')} could not be "
                  f"read[/] (what they hold is unknown):")
        for line in report.unreadable[:limit]:
            out.print(f"  {line}", highlight=False)
        if len(report.unreadable) > limit:
            out.print(f"  … and {len(report.unreadable) - limit:,} more (--json for all)")
    if report.residue:
        out.print("[bold red]RESIDUE FOUND[/]")
        raise typer.Exit(1)
    if report.unreadable:
        out.print("[bold red]NOT PROVEN CLEAN[/]: nothing found in what could be read")
        raise typer.Exit(1)
    out.print("[bold green]clean[/]: no key, email or phone number of these customers is left")


def register(app: typer.Typer) -> None:
    from pipeline.format_commands import convert, purge

    app.command()(scrub)
    app.command()(convert)
    app.command()(purge)
    app.command("strategies")(list_strategies)
    app.command()(audit)
