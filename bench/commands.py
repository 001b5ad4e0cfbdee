"""`voicescrub bench`: run the scrub benchmark in a results folder, render its report."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.harness import PROFILES, REPO, Settings

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def bench(
    profile: Annotated[str | None, typer.Option(help=f"One of {', '.join(PROFILES)} "
                                                     "(default: $PROFILE or default)")] = None,
    sf: Annotated[str | None, typer.Option(help="Scale factors, e.g. '0.1,1'")] = None,
    strategies: Annotated[str | None, typer.Option(help="Strategies, e.g. 'arrow,duckdb'")]
    = None,
    batches: Annotated[str | None, typer.Option(help="Customers per job, e.g. '1,100,1000'")]
    = None,
    layouts: Annotated[str | None, typer.Option(help="'date', 'bucket' or both")] = None,
    rounds: Annotated[int | None, typer.Option(
        help="Runs of every floor and strategy, each on its own snapshot with its own paired "
             "floor; the report takes the median round (default: $ROUNDS or the profile's)")]
    = None,
    results: Annotated[Path, typer.Option(help="Where result folders go")]
    = REPO / "bench" / "results",
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        help="Compare two result folders (A then B) instead of running")] = None,
    threshold: Annotated[float, typer.Option(help="Regression threshold for --compare")]
    = 0.15,
) -> None:
    """Benchmark every strategy against the physical floors and write a report."""
    from bench.report import compare as compare_runs
    from bench.report import render

    if compare is not None:
        for d in compare:
            if not (d / "benchmark.json").exists():
                err.print(f"[bold red]error:[/] {d} has no benchmark.json", highlight=False)
                raise typer.Exit(2)
        text, regressed = compare_runs(*compare, threshold=threshold)
        out.print(text, highlight=False)
        raise typer.Exit(1 if regressed else 0)
    env = dict(os.environ)
    for name, value in (("PROFILE", profile), ("SF", sf), ("STRATEGIES", strategies),
                        ("BATCHES", batches), ("LAYOUTS", layouts),
                        ("ROUNDS", None if rounds is None else str(rounds))):
        if value is not None:
            env[name] = value
    name = env.get("PROFILE") or "default"
    try:  # every setting, as the benchmark will read it, before a results folder is made
        Settings.from_env(env)
    except SystemExit as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = results / f"{stamp}-{name}"
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", str(REPO / "bench" / "test_scrub_bench.py"),
           str(REPO / "bench" / "test_format_bench.py"),
           "--benchmark-only", "-q", "-p", "no:cacheprovider", "-s",
           f"--benchmark-json={folder / 'benchmark.json'}", "--benchmark-columns=mean,rounds"]
    code = subprocess.call(cmd, cwd=REPO, env=env)
    if code != 0 or not (folder / "benchmark.json").exists():
        err.print(f"[bold red]benchmark failed[/] (pytest exit status {code}); partial "
                  f"results in {folder}", highlight=False)
        raise typer.Exit(1)
    report = render(folder)
    minutes = (time.perf_counter() - t0) / 60
    out.print(f"benchmark ({name} profile) finished in {minutes:.1f} min; report: {report}",
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(bench)
