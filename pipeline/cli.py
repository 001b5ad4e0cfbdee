"""The `voicescrub` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from generators.config import ConfigError, LakeConfig
from generators.schemas import DEFAULT_REGIONS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Generate a voice-assistant lake, erase customers from it, audit it.")
err = Console(stderr=True, soft_wrap=True)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"voicescrub {version('voicescrub')}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit")] = False) -> None:
    """Generate a voice-assistant lake, erase customers from it, audit it."""


def fail(message: str, code: int = 2) -> typer.Exit:
    """One-line error on stderr; the caller raises the returned Exit."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Lake root to create")] = Path("lake"),
    sf: Annotated[float, typer.Option(help="Scale factor: 1 = 100k customers, 10M recordings")]
    = 1.0,
    seed: Annotated[int, typer.Option(help="Seed: same seed and sf give the same rows")] = 42,
    layout: Annotated[str, typer.Option(help="Fact partitioning: date or bucket")] = "date",
    regions: Annotated[str, typer.Option(help="Comma-separated regions")] =
    ",".join(DEFAULT_REGIONS),
    days: Annotated[int, typer.Option(help="Days of voice history")] = 30,
    replicas: Annotated[bool, typer.Option(help="Copy each region's facts to a paired region")]
    = True,
    audio_bytes: Annotated[int, typer.Option(
        help="Bytes per audio payload (WAV header + PCM); ~96000 is 3 s of 16 kHz speech")]
    = 200,
    buckets: Annotated[int, typer.Option(help="Buckets per region (bucket layout); 0 = auto")]
    = 0,
    bloom_filters: Annotated[bool, typer.Option(help="Write Parquet bloom filters on keys")]
    = False,
    page_checksums: Annotated[bool, typer.Option(
        help="Write a CRC-32 in every page header (the scrub then verifies each page it reads)")]
    = False,
    workers: Annotated[int, typer.Option(help="Worker processes; 0 = all cores")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out")] = False,
) -> None:
    """Generate a synthetic voice-assistant lake (nine tables, Parquet, Hive-partitioned)."""
    from generators.lake import GenerationStopped, OutOfRoom
    from generators.lake import generate as run
    from pipeline.signals import exit_code_of, terminate_as_interrupt

    try:
        cfg = LakeConfig(sf=sf, seed=seed, layout=layout,
                         regions=tuple(r.strip() for r in regions.split(",") if r.strip()),
                         days=days, replicas=replicas, audio_bytes=audio_bytes, buckets=buckets,
                         bloom_filters=bloom_filters, page_checksums=page_checksums,
                         workers=workers)
        from generators.lake import check_output
        check_output(out, force)
    except ConfigError as e:
        raise fail(str(e)) from None
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]generate[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not sys.stderr.isatty()) as bar:
        task = bar.add_task("units", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            with terminate_as_interrupt():
                manifest = run(cfg, out, force=force, progress=progress)
        except OutOfRoom as e:
            raise fail(str(e), code=1) from None
        except GenerationStopped as e:
            raise fail(str(e), code=e.exit_code) from None
        except (KeyboardInterrupt, SystemExit) as e:  # before anything was written
            raise fail("interrupted: nothing was written", code=exit_code_of(e)) from None
    seconds = time.perf_counter() - t0
    rows = sum(t["rows"] for t in manifest["tables"].values())
    replica_rows = sum(t["replica_rows"] for t in manifest["tables"].values())
    size = sum(t["bytes"] for t in manifest["tables"].values())
    err.print(f"wrote {out}: {rows:,} rows (+{replica_rows:,} replica rows), "
              f"{size / 1e9:.2f} GB in {seconds:.1f} s — {rows / seconds / 1e6:.2f} M rows/s, "
              f"{size / seconds / 1e6:.0f} MB/s", highlight=False)


def _register_optional() -> None:
    """Commands that live beside their own module (queries, scrub, bench)."""
    import importlib

    for module in ("pipeline.commands", "queries.commands", "bench.commands"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


_register_optional()

if __name__ == "__main__":
    app()
