"""The scrub benchmark's shared driver: settings, lakes, snapshots, measured child processes.

Every measured run is a fresh process started on a fresh hard-linked snapshot of a generated
lake (made outside the timed region); the timer covers the work only (see bench/child.py).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

PROFILES = {
    # every strategy, one small lake per layout, one round: the harness itself never breaks
    # (CI). A week of data, not 30 days: the date lake's cost is its file count (30 days: 2,178
    # files, and 5.4 of the profile's 8.7 minutes went to it), not its rows. The
    # formats on the bucket lake only: the same code, and pyiceberg's delete costs files × ids
    "quick": dict(sfs=(0.01,), layouts=("date", "bucket"), batches=(100,), sweep=(),
                  sweep_layouts=(), backlog_jobs=2, rounds=1, days=7,
                  format_scenarios=((0.01, "bucket", 100),)),
    # the headline (sf 1, 1,000 customers, both layouts) and a batch-size sweep (10: the
    # issue's "only the files that hold them" job)
    "default": dict(sfs=(1.0,), layouts=("date", "bucket"), batches=(1000,),
                    sweep=(1, 10, 100, 10_000), sweep_layouts=("bucket",), backlog_jobs=0,
                    rounds=1, format_scenarios=((1.0, "date", 1000),)),
    # the whole matrix
    "full": dict(sfs=(0.1, 1.0), layouts=("date", "bucket"), batches=(1, 100, 1000, 10_000),
                 sweep=(), sweep_layouts=(), backlog_jobs=10, rounds=1,
                 format_scenarios=tuple((0.1, lay, b) for lay in ("date", "bucket")
                                        for b in (1, 100, 1000, 10_000))
                 + ((1.0, "date", 1000), (1.0, "bucket", 1000))),
}
FLOOR_NAMES = ("scan", "codec", "io")


@dataclass
class Settings:
    profile: str = "default"
    sfs: tuple[float, ...] = (1.0,)
    layouts: tuple[str, ...] = ("date", "bucket")
    batches: tuple[int, ...] = (1000,)
    sweep: tuple[int, ...] = ()  # extra batch sizes, on sweep_layouts, at the largest sf
    sweep_layouts: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()  # empty = every strategy found
    backlog_jobs: int = 0  # a backlog scenario: this many jobs in a row on one lake
    # scenarios the table formats run in: "all", or (sf, layout, batch) triples (pyiceberg's
    # delete costs files × ids, see the README: the big sweeps would take hours)
    format_scenarios: str | tuple = "all"
    rounds: int = 1
    days: int = 0  # days of data in the generated lakes; 0 = the generator's default (30)
    workers: int = 0  # files in flight; 0 = cores + 1 (fsync waits leave a core idle)
    lakes_dir: Path = REPO / "lakes"
    work_dir: Path = REPO / "bench" / "results" / "work"
    seed: int = 42

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment the Makefile passes (PROFILE, SF, LAYOUTS, …)."""
        environ = os.environ if environ is None else environ
        profile = environ.get("PROFILE", "default") or "default"
        if profile not in PROFILES:
            raise SystemExit(f"PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}")
        s = cls(profile=profile, **PROFILES[profile])

        def nums(name: str, typ: type) -> tuple | None:
            v = environ.get(name, "").strip()
            try:
                return tuple(typ(x) for x in v.replace(",", " ").split()) if v else None
            except ValueError:
                kind = "integers" if typ is int else "numbers"
                raise SystemExit(f"{name} must be {kind}, got {v!r}") from None

        if (v := nums("SF", float)) is not None:
            s.sfs, s.days = v, 0  # a scale asked for: the generator's default lake
        if (v := nums("BATCHES", int)) is not None:
            s.batches, s.sweep = v, ()
        if v := environ.get("LAYOUTS", "").strip():
            s.layouts = tuple(v.replace(",", " ").split())
            s.sweep_layouts = tuple(x for x in s.sweep_layouts if x in s.layouts)
        if v := environ.get("STRATEGIES", "").strip():
            s.strategies = tuple(v.replace(",", " ").split())
        if environ.get("FORMAT_SCENARIOS", "").strip() == "all" or any(
                environ.get(k, "").strip() for k in ("SF", "BATCHES", "LAYOUTS")):
            s.format_scenarios = "all"
        if (v := nums("ROUNDS", int)) is not None:
            if v[0] < 1:
                raise SystemExit(f"ROUNDS must be 1 or more, got {v[0]}")
            s.rounds = v[0]
        if (v := nums("BENCH_WORKERS", int)) is not None:
            s.workers = v[0]
        if v := environ.get("LAKES_DIR"):
            s.lakes_dir = Path(v)
        return s

    @property
    def n_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1) + 1

    def strategy_names(self) -> list[str]:
        """The copy-on-write strategies to run."""
        from pipeline import formats, strategies

        found = list(strategies.available())
        if not self.strategies:
            return found
        known = found + list(formats.available())
        unknown = [s for s in self.strategies if s not in known]
        if unknown:
            raise SystemExit(f"unknown strategy {unknown[0]!r}; available: {', '.join(known)}")
        return [s for s in self.strategies if s in found]

    def format_names(self) -> list[str]:
        """The table-format strategies to run."""
        from pipeline import formats

        found = list(formats.available())
        self.strategy_names()  # the same check of STRATEGIES
        return [s for s in (self.strategies or found) if s in found]

    def format_scenario_list(self) -> list[tuple[float, str, int]]:
        if self.format_scenarios == "all":
            return self.scenarios()
        return [sc for sc in self.scenarios()
                if tuple(sc) in {tuple(x) for x in self.format_scenarios}]

    def scenarios(self) -> list[tuple[float, str, int]]:
        """(sf, layout, batch) of every scenario, headline first."""
        out = [(sf, layout, b) for sf in self.sfs for layout in self.layouts for b in self.batches]
        top = max(self.sfs)
        out += [(top, layout, b) for layout in self.sweep_layouts for b in self.sweep
                if (top, layout, b) not in out]
        return out

    def headline_scenarios(self) -> list[tuple[float, str, int]]:
        """The scenarios of the README's headline table, by the report's own rule: the
        largest scale factor, at the job size `headline_batch` picks."""
        from bench.report import headline_batch

        top = max(self.sfs)
        batch = headline_batch({b for sf, _, b in self.scenarios() if sf == top}, self.batches)
        return [sc for sc in self.scenarios() if sc[0] == top and sc[2] == batch]

    def to_json(self) -> dict:
        d = asdict(self)
        d["lakes_dir"], d["work_dir"] = str(self.lakes_dir), str(self.work_dir)
        return d


# --- lakes and snapshots -----------------------------------------------------------------
def lake_path(s: Settings, sf: float, layout: str) -> Path:
    days = f"-days{s.days}" if s.days else ""
    return s.lakes_dir / f"sf{sf:g}-{layout}-seed{s.seed}{days}"


def ensure_lake(s: Settings, sf: float, layout: str) -> Path:
    """The generated lake of a scenario, made if missing or written by another generator
    version (its files would differ), reused otherwise."""
    from generators.config import GENERATOR_VERSION, LakeConfig
    from generators.lake import MANIFEST, generate

    path = lake_path(s, sf, layout)
    manifest = path / MANIFEST
    version = json.loads(manifest.read_text()).get("generator_version") \
        if manifest.exists() else None
    if version != GENERATOR_VERSION:
        why = "missing" if version is None else f"made by generator {version}"
        days = f", {s.days} days" if s.days else ""
        print(f"generating {path} (sf {sf}, {layout} layout{days}; {why})…", file=sys.stderr,
              flush=True)
        days_kw = {"days": s.days} if s.days else {}
        generate(LakeConfig(sf=sf, layout=layout, seed=s.seed, **days_kw), path, force=True)
    return path


def source_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of every file: a snapshot's writes must never reach its source."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def snapshot(src: Path, dst: Path) -> Path:
    """A hard-linked copy: free, and safe since strategies never write into a file."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def pick_ids(manifest: dict, batch: int, seed: int, job: int = 0) -> list[int]:
    n = manifest["config"]["n_customers"]
    rng = np.random.default_rng([seed, batch, job])
    return sorted(rng.choice(np.arange(1, n + 1), size=min(batch, n), replace=False).tolist())


# --- a measured child process --------------------------------------------------------------
@dataclass
class Child:
    spec: dict
    result_path: Path
    proc: subprocess.Popen | None = None
    rusage: dict = field(default_factory=dict)
    wall_s: float = 0.0

    def start(self) -> Child:
        spec_path = self.result_path.with_suffix(".spec.json")
        spec_path.write_text(json.dumps(self.spec))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.child", str(spec_path), str(self.result_path)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"child for {self.spec['kind']} {self.spec['name']} did not "
                               f"start: {line!r}")
        return self

    def go(self) -> None:
        """The timed part: release the child and wait for it to exit (wait4 rusage)."""
        t0 = time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.wall_s = time.perf_counter() - t0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        # ru_maxrss includes the parent's RSS at fork (it survives exec): kept for the
        # record, while peak_rss_mb comes from the child's own VmHWM (see bench/child.py).
        self.rusage = {"maxrss_wait4_mb": ru.ru_maxrss / 1024, "user_s": ru.ru_utime,
                       "sys_s": ru.ru_stime, "cpu_s": ru.ru_utime + ru.ru_stime}
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.spec['kind']} {self.spec['name']} failed with exit "
                               f"status {self.proc.returncode}")

    def result(self) -> dict:
        return json.loads(self.result_path.read_text())


def machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    du = shutil.disk_usage(REPO)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=REPO, capture_output=True, text=True).stdout.strip())
    return {"cores": os.cpu_count(), "memory_mb": mem, "cpu": cpu,
            "disk_total_gb": round(du.total / 1e9), "disk_free_gb": round(du.free / 1e9),
            "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit + ("+dirty" if dirty else "")}


def median_round(figures: list[dict]) -> dict:
    """The round whose work time is the median (the lower one of an even count): a real
    round, so its figures belong together, and one slow or fast round cannot move it."""
    ranked = sorted(figures, key=lambda f: f["work_s"])
    return ranked[(len(ranked) - 1) // 2]
