"""Benchmark of the lake generator against DuckDB's TPC-H dbgen and row-by-row Faker.

    .venv/bin/python -m pytest bench/test_generate_bench.py --benchmark-only -q -s

Options (environment):
    VOICESCRUB_BENCH_SF        scale factor of our generator (default 1; both layouts)
    VOICESCRUB_BENCH_DBGEN_SF  scale factor of DuckDB's dbgen (default 1)
    VOICESCRUB_BENCH_SF3=1     also sf 3, date layout (peak RSS must not grow with sf)
    VOICESCRUB_BENCH_FAKER_ROWS  rows of the Faker sample (default 20000)
    VOICESCRUB_BENCH_DIR       work dir for generated data (default bench/results/work);
                               every output is deleted right after it is measured

Each contender runs in a fresh process (bench/generate_child.py): its peak RSS and CPU time are
its own (os.wait4), the parent times the whole process and the child times its work. The machine
is shared and noisy: read the ratios, which are measured in the same run. At session end the
report lands in bench/results/<UTC timestamp>/generate.json and generate.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from bench.generate_report import generate_ratios, render_generate_report

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CORES = os.cpu_count() or 1
ENV_KEYS = ("VOICESCRUB_BENCH_SF", "VOICESCRUB_BENCH_DBGEN_SF", "VOICESCRUB_BENCH_SF3",
            "VOICESCRUB_BENCH_FAKER_ROWS", "VOICESCRUB_BENCH_DIR")
VERSION_PACKAGES = ("voicescrub", "duckdb", "duckdb-extension-tpch", "pyarrow", "polars",
                    "numpy", "faker")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise pytest.UsageError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise pytest.UsageError(f"{name} must be > 0, got {raw!r}")
    return value


SF = _env_float("VOICESCRUB_BENCH_SF", 1.0)
DBGEN_SF = _env_float("VOICESCRUB_BENCH_DBGEN_SF", 1.0)
FAKER_ROWS = int(_env_float("VOICESCRUB_BENCH_FAKER_ROWS", 20_000))
SF3 = os.environ.get("VOICESCRUB_BENCH_SF3", "") not in ("", "0")
WORK = Path(os.environ.get("VOICESCRUB_BENCH_DIR") or RESULTS / "work").resolve()


def versions() -> dict[str, str]:
    out = {}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict:
    from bench.harness import machine

    m = machine()
    cpu, mem = m["cpu"], m["memory_mb"] / 1024 if m["memory_mb"] else None
    return {
        "cpu": cpu,
        "cores": CORES,
        "memory_gib": round(mem, 1) if mem else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions(),
    }


# --- measuring one child process ---------------------------------------------------------
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(pid: int) -> int:
    """Sum of RSS bytes over `pid` and its descendants (Linux /proc; 0 elsewhere)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


class _TreeSampler(threading.Thread):
    """Peak of the process tree's summed RSS, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def run_child(contender: str, kwargs: dict, result_path: Path) -> dict:
    """Run bench.generate_child in a fresh interpreter; return its result plus wall time,
    peak RSS and CPU time of the whole child process as the parent saw them."""
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # the vocabulary built with Faker as a first run does, not loaded from a kept file: the
    # figures stay those of a cold start, comparable with the runs before that file existed
    env["VOICESCRUB_CACHE_DIR"] = ""
    argv = [sys.executable, "-m", "bench.generate_child", contender, json.dumps(kwargs),
            str(result_path)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env)
    sampler = _TreeSampler(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    tree_peak = sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} child failed with exit code {proc.returncode}: "
                           f"{shlex.join(argv)}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    result.update(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
        peak_rss_mb=maxrss / 2**20,
        tree_rss_mb=tree_peak / 2**20 if tree_peak else None,
    )
    return result


def finish(result: dict, contender: str, kind: str, sf: float | None, layout: str | None
           ) -> dict:
    """Add the derived figures every contender shares."""
    seconds = result["work_s"]
    result.update(
        contender=contender,
        kind=kind,
        sf=sf,
        layout=layout,
        seconds=seconds,
        rows_per_s=result["rows"] / seconds,
        mb_per_s=result["bytes"] / 1e6 / seconds,
        rows_per_s_process=result["rows"] / result["wall_s"],
        versions=versions(),
        cores=CORES,
    )
    return result


def measure(benchmark, collected: list[dict], contender: str, kind: str, kwargs: dict,
            out: Path, sf: float | None = None, layout: str | None = None) -> dict:
    """One measured run (rounds=1, iterations=1) in a fresh process; outputs deleted after."""
    WORK.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    result_path = WORK / f"{out.name}.result.json"
    try:
        raw = benchmark.pedantic(run_child, args=(kind, kwargs, result_path),
                                 rounds=1, iterations=1, warmup_rounds=0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        result_path.unlink(missing_ok=True)
    result = finish(raw, contender, kind, sf, layout)
    benchmark.extra_info.update({k: v for k, v in result.items()
                                 if not isinstance(v, dict) or k == "versions"})
    collected.append(result)
    print(f"\n{contender}: {result['rows']:,} rows in {result['seconds']:.2f} s = "
          f"{result['rows_per_s'] / 1e6:.3f} M rows/s, {result['mb_per_s']:.1f} MB/s, "
          f"peak RSS {result['peak_rss_mb']:,.0f} MB, CPU {result['cpu_s']:.1f} s")
    return result


# --- session: collect results, write the report at the end ---------------------------------
def _command(config: pytest.Config) -> str:
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ENV_KEYS if os.environ.get(k)]
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    return " ".join(env + [shlex.quote(str(exe)), "-m", "pytest",
                           shlex.join(config.invocation_params.args)])


def _check_ignored(path: Path) -> None:
    try:
        rel = path.relative_to(REPO)
    except ValueError:
        return  # outside the repository: nothing to commit by mistake
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=REPO,
                                 capture_output=True).returncode == 0
    except OSError:
        return
    if not ignored:
        warnings.warn(f"VOICESCRUB_BENCH_DIR {path} is not gitignored", stacklevel=2)


def write_report(results: list[dict], command: str) -> Path:
    now = dt.datetime.now(dt.UTC)
    machine = {"created_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"), **machine_info()}
    target = RESULTS / now.strftime("%Y%m%dT%H%M%SZ")
    target.mkdir(parents=True, exist_ok=True)
    doc = {
        "created_utc": machine["created_utc"],
        "command": command,
        "machine": machine,
        "settings": {"sf": SF, "dbgen_sf": DBGEN_SF, "sf3": SF3, "faker_rows": FAKER_ROWS,
                     "work_dir": str(WORK), "dbgen_threads": CORES},
        "results": results,
        "ratios": generate_ratios(results),
    }
    (target / "generate.json").write_text(json.dumps(doc, indent=1) + "\n")
    (target / "generate.md").write_text(
        render_generate_report(results, machine=machine, command=command))
    return target


@pytest.fixture(scope="session")
def collected(request: pytest.FixtureRequest):
    _check_ignored(WORK)
    results: list[dict] = []
    yield results
    if WORK.exists() and not any(WORK.iterdir()):
        WORK.rmdir()
    if not results:
        return
    target = write_report(results, _command(request.config))
    line = (f"generator benchmark report: {target / 'generate.md'} "
            f"(figures: {target / 'generate.json'})")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(line)
    else:
        print(line)


# --- the contenders ----------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["date", "bucket"])
def test_voicescrub(benchmark, collected, layout):
    out = WORK / f"voicescrub-{layout}-sf{SF:g}"
    r = measure(benchmark, collected, f"voicescrub {layout}", "voicescrub",
                {"sf": SF, "layout": layout, "out": str(out)}, out, sf=SF, layout=layout)
    assert r["rows"] > 0 and r["replica_rows"] > 0


def test_dbgen(benchmark, collected):
    out = WORK / f"dbgen-sf{DBGEN_SF:g}"
    r = measure(benchmark, collected, "DuckDB dbgen + COPY parquet", "dbgen",
                {"sf": DBGEN_SF, "out": str(out), "threads": CORES}, out, sf=DBGEN_SF)
    assert r["files"] == 8 and r["rows"] > 0


def test_faker(benchmark, collected):
    out = WORK / "faker"
    r = measure(benchmark, collected, f"Faker row by row ({FAKER_ROWS:,} rows)", "faker",
                {"rows": FAKER_ROWS, "out": str(out)}, out)
    assert r["rows"] == FAKER_ROWS


@pytest.mark.skipif(not SF3, reason="set VOICESCRUB_BENCH_SF3=1 to also run sf 3 (date)")
def test_voicescrub_sf3(benchmark, collected):
    out = WORK / "voicescrub-date-sf3"
    r = measure(benchmark, collected, "voicescrub date (sf 3)", "voicescrub",
                {"sf": 3.0, "layout": "date", "out": str(out)}, out, sf=3.0, layout="date")
    assert r["rows"] > 0
