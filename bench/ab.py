"""A/B: the same scrub job with the code of two (or more) checkouts, alternating.

On a shared machine a ratio of two runs minutes apart moves by ±15 %: to tell whether a code
change made a job faster, run the old and the new code back to back, several rounds, each on a
fresh hard-linked snapshot of the same lake, each in a fresh process, and compare round by
round.

    python -m bench.ab --rounds 3 old=/path/to/old/checkout new=.

Each variant is NAME=CHECKOUT (a directory holding the `pipeline` package; `git worktree add`
makes one for any commit); NAME=CHECKOUT:ENV=VALUE,… also sets environment variables for that
variant. The venv running this script runs every variant, so the engine versions are the same.
Prints one JSON line per run and a summary; the snapshots are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO, pick_ids, snapshot

# Runs in the child, with the variant's checkout first on sys.path.
CHILD = """
import datetime as dt, json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
try:  # a scrubbing process's allocator settings, as the variant's own `scrub` command sets them
    from pipeline.allocator import keep_freed_pages
    keep_freed_pages()
except ImportError:  # a checkout from before them
    pass
from pipeline.intake import ErasureRequest
from pipeline.lake import Lake
from pipeline.scrub import run_scrub
import importlib
# compiled loops: start-up, not work
for name in ("pipeline.rowhash", "pipeline.plan", "pipeline.dictionary"):
    try:
        importlib.import_module(name).warm_up()
    except (ImportError, AttributeError):  # a checkout from before them
        pass
ids = np.asarray(json.loads(Path(sys.argv[3]).read_text()), np.int64)
req = ErasureRequest(np.unique(ids), dt.datetime.now(dt.UTC), "ab", 0)
lake = Lake.open(Path(sys.argv[2]))
c0, t0 = time.process_time(), time.perf_counter()
out = run_scrub(lake, req, sys.argv[4], workers=int(sys.argv[5]))
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
assert out.receipt["verification"]["passed"]
print(json.dumps({"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                  "timings_s": out.receipt["timings_s"]}))
"""


def parse_variant(text: str) -> tuple[str, Path, dict[str, str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"a variant is NAME=CHECKOUT[:ENV=VALUE,...], got {text!r}")
    path, _, env = rest.partition(":")
    checkout = Path(path).resolve()
    if not (checkout / "pipeline" / "scrub.py").exists():
        raise SystemExit(f"{checkout} holds no pipeline/scrub.py: not a voicescrub checkout")
    extra = dict(kv.split("=", 1) for kv in env.split(",") if kv)
    return name, checkout, extra


def run_variant(checkout: Path, env: dict[str, str], src: Path, work: Path, ids_file: Path,
                strategy: str, workers: int) -> dict:
    snap = snapshot(src, work / "ab-snapshot")
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(checkout), str(snap),
                               str(ids_file), strategy, str(workers)], cwd=checkout,
                              env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"the scrub failed in {checkout}:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", help="NAME=CHECKOUT[:ENV=VALUE,...]")
    ap.add_argument("--lake", type=Path, default=REPO / "lakes" / "sf1-date-seed42",
                    help="a generated lake (never written: each run gets a snapshot)")
    ap.add_argument("--batch", type=int, default=1000, help="customers per job")
    ap.add_argument("--seed", type=int, default=42, help="seed of the customer sample")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--strategy", default="arrow")
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    ap.add_argument("--work-dir", type=Path, default=REPO / "bench" / "results" / "work")
    a = ap.parse_args(argv)
    variants = [parse_variant(v) for v in a.variants]
    manifest = json.loads((a.lake / "_lake.json").read_text())
    a.work_dir.mkdir(parents=True, exist_ok=True)
    ids_file = a.work_dir / "ab-ids.json"
    ids_file.write_text(json.dumps(pick_ids(manifest, a.batch, a.seed)))
    runs = []
    for r in range(a.rounds):
        for name, checkout, env in variants:
            res = run_variant(checkout, env, a.lake, a.work_dir, ids_file, a.strategy,
                              a.workers)
            runs.append({"round": r, "variant": name, **res})
            print(json.dumps(runs[-1]), flush=True)
    first = variants[0][0]
    for name, _, _ in variants:
        walls = [x["wall_s"] for x in runs if x["variant"] == name]
        ratios = [x["wall_s"] / y["wall_s"] for x, y in zip(
            [x for x in runs if x["variant"] == name],
            [y for y in runs if y["variant"] == first], strict=True)]
        print(f"{name}: wall median {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}); round by round ÷ {first}: "
              + ", ".join(f"{q:.3f}" for q in ratios))
    return runs


if __name__ == "__main__":
    main()
