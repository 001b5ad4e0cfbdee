"""Generate a whole lake: units of work in parallel processes, streamed to Parquet.

A unit is one partition of one region: (region, date) or (region, bucket) for the facts, a
region for the dimensions. It writes every table of that partition, then copies the files to the
paired replica region. A file holds at most `chunk_rows` recordings (one row group), generated at
once, so what a worker does per file has the same shape at every scale factor: more files, never
bigger ones.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from generators import dims
from generators.audio import AudioSynth
from generators.config import GENERATOR_VERSION, ConfigError, LakeConfig
from generators.facts import Core, FactGenerator
from generators.population import UTC_OFFSET_H, Population, bucket_of_ints, bucket_of_strings
from generators.schemas import (
    DIMENSION_TABLES,
    SCHEMA_VERSION,
    TABLES,
)
from generators.vocab import Vocab, build_vocab
from generators.writer import TableFile, abort_open_files, writer_settings

MANIFEST = "_lake.json"
UNFINISHED = ".voicescrub-unfinished"  # present while a lake is written
SPILL = "_spill"
CUSTOMER_SLICE = 1 << 16


@dataclass(frozen=True)
class Unit:
    kind: str  # "dims" | "facts" | "merge"
    region: int
    part: int = 0  # day index (date layout) or bucket
    table: str = ""  # for "merge"
    customers: np.ndarray | None = None  # bucket layout: the bucket's customers


# Spawned workers' allocators give freed pages back to the OS at once rather than keeping them
# for reuse: polars' jemalloc (configured through this variable, read when polars loads)
# purges immediately (dirty_decay_ms:0) and with MADV_DONTNEED (muzzy_decay_ms:0), whose pages
# leave the resident set, unlike MADV_FREE; Arrow's mimalloc pool, where it is the pool (the
# user named it, or pyarrow has no jemalloc), purges without delay. Arrow's own jemalloc pool
# (the default below) is purged by release_memory() after each chunk and file. What a worker
# retains between chunks then does not drift with how many chunks it has run.
_ALLOCATOR_ENV = {
    "_RJEM_MALLOC_CONF": ",".join(filter(None, [os.environ.get("_RJEM_MALLOC_CONF"),
                                                "dirty_decay_ms:0", "muzzy_decay_ms:0"])),
    "MIMALLOC_PURGE_DELAY": "0",
}


# Arrow's buffers in a worker come from its jemalloc pool rather than the default mimalloc one:
# measured with `voicescrub generate --sf 1|3`, the largest worker's VmHWM was 6-7 MB lower at
# sf 1, 5-6 MB at sf 3, and generation 6-11 % faster. Set through the environment so the pool
# serves the worker from its first allocation (switching pools in the initializer leaves
# mimalloc's pages resident beside jemalloc's, and the peak was no lower). A pool the user
# names wins; a pyarrow built without jemalloc keeps its default.
ARROW_POOL = "ARROW_DEFAULT_MEMORY_POOL"


def _worker_env() -> dict[str, str]:
    env = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", **_ALLOCATOR_ENV}
    if ARROW_POOL not in os.environ and _has_jemalloc():
        env[ARROW_POOL] = "jemalloc"
    return env


def _has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


# --- worker state: built once per process ----------------------------------------------------
_STATE: dict = {}


def _init_worker(cfg: LakeConfig, vocab: Vocab, out: str) -> None:
    pop = Population(cfg, vocab)
    _STATE.update(cfg=cfg, pop=pop, out=Path(out),
                  facts=FactGenerator(pop, AudioSynth(cfg.seed, cfg.audio_bytes)))


def _init_pool_worker(cfg: LakeConfig, vocab: Vocab, out: str) -> None:
    # Ctrl-C reaches the whole process group: the parent alone stops the run (it stops the
    # workers, then removes the partial lake), so no worker prints a traceback of its own.
    # A worker whose parent is gone exits: it would otherwise wait for work forever.
    ignore_ctrl_c()
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _init_worker(cfg, vocab, out)


def ignore_ctrl_c() -> None:
    """In a worker: Ctrl-C ignored, then unblocked (the spawner blocked it; a press while
    the worker was starting stays pending until now, and is then discarded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _exit_with_parent() -> None:
    parent = mp.parent_process()
    if parent is not None:
        mp_connection.wait([parent.sentinel])
        os._exit(1)


def _run_unit(unit: Unit) -> list[dict]:
    try:
        if unit.kind == "dims":
            records = _dims_unit(unit)
        elif unit.kind == "facts":
            records = _facts_unit(unit)
        else:
            records = _merge_unit(unit)
    except BaseException:
        abort_open_files()
        raise
    release_memory()
    # the worker's own high-water RSS so far, for the manifest (not a file record)
    return [*records, {"peak_rss_mb": peak_rss_mb(),
                       "arrow_pool": pa.default_memory_pool().backend_name}]


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_memory() -> None:
    """Give freed memory back to the OS after each chunk and unit: glibc keeps freed numpy
    buffers in its heap (up to tens of MB once large buffers have raised its thresholds) and
    Arrow's pool keeps its pages, so without this what a worker holds between chunks drifts
    upward with the number of chunks a unit has, which grows with the scale factor."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM; unlike ru_maxrss, not inherited at fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --- paths -------------------------------------------------------------------------------
def partition_dir(cfg: LakeConfig, table: str, region: str, origin: str, part: int) -> str:
    if TABLES[table].kind == "dimension":
        return f"{table}/region={region}"
    leaf = (f"date={cfg.dates[part].isoformat()}" if cfg.layout == "date"
            else f"bucket={part:03d}")
    return f"{table}/region={region}/origin={origin}/{leaf}"


def _file_record(table: str, region: str, origin: str, rel: str, stats: dict) -> dict:
    return {"table": table, "region": region, "origin": origin, "path": rel, **stats}


def _finish(files: dict[str, TableFile], region: str, part: int) -> list[dict]:
    """Close a unit's files and copy them to the replica region."""
    cfg, out = _STATE["cfg"], _STATE["out"]
    records = []
    replica = cfg.replica_of().get(region)
    for table, tf in files.items():
        stats = tf.close()
        if stats is None:
            continue
        rel = str(tf.path.relative_to(out))
        records.append(_file_record(table, region, region, rel, stats))
        if replica and TABLES[table].kind == "fact":
            rrel = f"{partition_dir(cfg, table, replica, region, part)}/{tf.path.name}"
            (out / rrel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tf.path, out / rrel)
            records.append(_file_record(table, replica, region, rrel, stats))
    return records


def _open(table: str, region: str, part: int, index: int = 0) -> TableFile:
    cfg, out = _STATE["cfg"], _STATE["out"]
    spec = TABLES[table]
    rel = f"{partition_dir(cfg, table, region, region, part)}/part-{index:05d}.parquet"
    return TableFile(out / rel, spec.file_schema(cfg.layout),
                     writer_settings(spec, cfg.layout, cfg))


# --- dimension unit ----------------------------------------------------------------------
def _dims_unit(unit: Unit) -> list[dict]:
    cfg, pop = _STATE["cfg"], _STATE["pop"]
    region = cfg.regions[unit.region]
    files = {t: _open(t, region, 0) for t in DIMENSION_TABLES}
    for lo in range(1, cfg.n_customers + 1, CUSTOMER_SLICE):
        cid = np.arange(lo, min(lo + CUSTOMER_SLICE, cfg.n_customers + 1), dtype=np.int64)
        cid = cid[pop.home(cid) == unit.region]
        for start in range(0, len(cid), cfg.chunk_rows // 4):
            part = cid[start:start + cfg.chunk_rows // 4]
            files["customers"].write(dims.customers(pop, part))
            files["devices"].write(dims.devices(pop, part))
            files["skill_links"].write(dims.skill_links(pop, part))
    return _finish(files, region, 0)


# --- fact unit ---------------------------------------------------------------------------
def _unit_cells(unit: Unit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, day, count) of the unit's cells in customer order, kept compact (int32,
    int16, int16: 8 bytes a cell, widened one file at a time). The date layout computes them
    a customer slice at a time; they are the only per-unit state that grows with the scale
    factor (0.6 MB for the largest partition at sf 3)."""
    cfg, fg = _STATE["cfg"], _STATE["facts"]
    if cfg.layout == "bucket":
        slices = [fg.cells(unit.customers, np.arange(cfg.days), unit.region)]
    else:
        slices = (fg.cells(np.arange(lo, min(lo + CUSTOMER_SLICE, cfg.n_customers + 1),
                                     dtype=np.int64), np.array([unit.part]), unit.region)
                  for lo in range(1, cfg.n_customers + 1, CUSTOMER_SLICE))
    # customer ids < 2^28 (checked by the config), days <= 4000, counts <= MAX_PER_DAY
    parts = [(c.astype(np.int32), d.astype(np.int16), n.astype(np.int16)) for c, d, n in slices]
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True))


def _split_files(n: np.ndarray, max_rows: int) -> Iterator[slice]:
    """Cells grouped into files of at most `max_rows` recordings, split evenly (a partition
    of 140k rows becomes three files of ~47k, not 64k + 64k + 12k); a file holds whole cells,
    so a single cell past `max_rows` is a file of its own."""
    if not len(n):
        return
    ends = np.cumsum(n)
    parts = max(1, -(-int(ends[-1]) // max_rows))
    target = -(-int(ends[-1]) // parts)
    cuts = np.searchsorted(ends, np.arange(1, parts) * target, side="left") + 1
    bounds = np.unique(np.concatenate([[0], np.minimum(cuts, len(n)), [len(n)]]))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        yield slice(int(lo), int(hi))


def _facts_unit(unit: Unit) -> list[dict]:
    c, d, n = _unit_cells(unit)
    records: list[dict] = []
    for index, cells in enumerate(_split_files(n, _STATE["cfg"].chunk_rows)):
        records += _facts_file(unit, index, *(a[cells].astype(np.int64) for a in (c, d, n)))
    return records


def _facts_file(unit: Unit, index: int, c: np.ndarray, d: np.ndarray,
                n: np.ndarray) -> list[dict]:
    """One file of each fact table from the given cells."""
    cfg, fg = _STATE["cfg"], _STATE["facts"]
    region = cfg.regions[unit.region]
    direct = ("recordings", "audio", "transcripts", "usage_daily")
    if cfg.layout == "date":
        direct += ("actions", "skill_events")
    # Only keys and start times exist for the whole file (to sort it); every other column
    # is computed a chunk at a time, so memory follows the chunk, not the partition.
    key, started = fg.keys(c, d, n, unit.region)
    if cfg.layout == "date":
        order = np.lexsort((key, started))
    else:
        order = np.lexsort((key, started, key >> 24))
    key = key[order]
    del started, order
    files = {t: _open(t, region, unit.part, index) for t in direct}
    spills: dict[str, list[pa.Table]] = {"actions": [], "skill_events": []}
    step = _chunk_rows(cfg)
    usage = []
    for lo in range(0, len(key), step):
        usage.append(_facts_chunk(key[lo:lo + step], unit.region, files, spills))
        release_memory()
    if usage:
        files["usage_daily"].write(fg.usage_daily(usage, with_date=cfg.layout == "bucket"))
    del usage
    records = _finish(files, region, unit.part)
    if cfg.layout == "bucket":
        _spill(unit, index, spills)
    del files, spills, key
    release_memory()  # the next file of the unit starts where the first one did
    return records


def _facts_chunk(key: np.ndarray, region: int, files: dict[str, TableFile],
                 spills: dict[str, list[pa.Table]]):
    """Write one chunk of recordings and what derives from them; return its partial usage
    rollup. A function of its own so that nothing of a chunk outlives it: the next chunk
    (or file) never runs beside the previous chunk's tables."""
    cfg, fg = _STATE["cfg"], _STATE["facts"]
    x: Core = fg.core_of(key, region)
    usage = fg.usage_partial(x)
    files["recordings"].write(fg.recordings(x))
    # Audio payloads are the bulk of a chunk: build them one audio row group at a time (the
    # same row groups as writing the chunk at once, a quarter of the transient memory).
    step = files["audio"].row_group_rows
    for lo in range(0, len(x), step):
        files["audio"].write(fg.audio_table(x.take(slice(lo, lo + step))))
    transcripts, actions, events = fg.text_tables(x, region)
    files["transcripts"].write(transcripts)
    if cfg.layout == "date":
        files["actions"].write(actions)
        files["skill_events"].write(events)
    else:
        spills["actions"].append(actions)
        spills["skill_events"].append(events)
    return usage


def _chunk_rows(cfg: LakeConfig) -> int:
    """Rows generated at once: bounded so the audio payloads of a chunk stay near 64 MiB."""
    return max(256, min(cfg.chunk_rows, (64 << 20) // cfg.audio_bytes))


# --- bucket layout: actions and skill events are bucketed by their own key -----------------
def _spill(unit: Unit, index: int, spills: dict[str, list[pa.Table]]) -> None:
    """Route rows to the bucket of the key they carry: one Arrow IPC file per unit and table,
    one record batch per target bucket (an empty batch where a bucket gets nothing), so a
    merge reads its bucket's batch from each file, memory-mapped."""
    cfg, out = _STATE["cfg"], _STATE["out"]
    for table, parts in spills.items():
        if not parts:
            continue
        # One dictionary per column for the whole file: IPC files cannot replace it.
        t = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
        if t.num_rows == 0:
            continue
        key = TABLES[table].bucket_key
        if key == "recording_id":
            b = bucket_of_ints(t[key].to_numpy(), cfg.n_buckets)
        else:
            b = bucket_of_strings(t[key], cfg.n_buckets)
        order = np.argsort(b, kind="stable")
        batch = t.take(order).combine_chunks().to_batches()[0]
        bounds = np.searchsorted(b[order], np.arange(cfg.n_buckets + 1))
        d = out / SPILL / table / f"region={unit.region}"
        d.mkdir(parents=True, exist_ok=True)
        with ipc.new_file(d / f"from-{unit.part:03d}-{index:03d}.arrow", t.schema) as w:
            for bucket in range(cfg.n_buckets):
                lo, hi = bounds[bucket], bounds[bucket + 1]
                w.write_batch(batch.slice(lo, hi - lo))


def _merge_unit(unit: Unit) -> list[dict]:
    cfg, out = _STATE["cfg"], _STATE["out"]
    region = cfg.regions[unit.region]
    d = out / SPILL / unit.table / f"region={unit.region}"
    spec = TABLES[unit.table]
    batches = []
    for p in sorted(d.glob("*.arrow")) if d.exists() else []:
        with pa.memory_map(str(p)) as source:
            batch = ipc.open_file(source).get_batch(unit.part)
            if batch.num_rows:
                batches.append(batch)
    if not batches:
        return []
    t = pa.Table.from_batches(batches).sort_by([(c, "ascending") for c in spec.sort_bucket])
    tf = _open(unit.table, region, unit.part)
    tf.write(t)
    return _finish({unit.table: tf}, region, unit.part)


# --- orchestration -------------------------------------------------------------------------
def plan_units(cfg: LakeConfig) -> tuple[list[Unit], list[Unit]]:
    """Units of the first phase (dims + facts) and of the second (bucket merges)."""
    first = [Unit("dims", r) for r in range(len(cfg.regions))]
    if cfg.layout == "date":
        first += [Unit("facts", r, d) for d in range(cfg.days) for r in range(len(cfg.regions))]
        return first, []
    cid = np.arange(1, cfg.n_customers + 1, dtype=np.int64)
    b = bucket_of_ints(cid, cfg.n_buckets)
    order = np.argsort(b, kind="stable")
    bounds = np.searchsorted(b[order], np.arange(cfg.n_buckets + 1))
    for bucket in range(cfg.n_buckets):
        members = cid[order[bounds[bucket]:bounds[bucket + 1]]]
        first += [Unit("facts", r, bucket, customers=members) for r in range(len(cfg.regions))]
    second = [Unit("merge", r, bucket, table=t) for t in ("actions", "skill_events")
              for bucket in range(cfg.n_buckets) for r in range(len(cfg.regions))]
    return first, second


def _schedule(pool: ProcessPoolExecutor, first: list[Unit], second: list[Unit], workers: int,
              tick: Callable[[list[dict]], None]) -> None:
    """Run the units with a short queue: a region's merges (bucket layout) start as soon as
    that region's fact units are done, ahead of other regions' fact units, so no core idles
    at a barrier between the phases."""
    pending = deque(first)
    left = {r: sum(1 for u in first if u.kind == "facts" and u.region == r)
            for r in {u.region for u in first}}
    merges = {r: [u for u in second if u.region == r] for r in left}
    running: dict = {}

    def fill() -> None:
        while pending and len(running) < 2 * workers:
            unit = pending.popleft()
            running[pool.submit(_run_unit, unit)] = unit

    with sigint_blocked(), _stops_deferred():
        fill()  # starts the workers: see sigint_blocked and _stops_deferred
    while pending or running:
        fill()
        # short naps: a main thread blocked on a lock is not woken by Ctrl-C
        done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
        for f in done:
            unit = running.pop(f)
            tick(f.result())
            if unit.kind == "facts":
                left[unit.region] -= 1
                if left[unit.region] == 0:
                    pending.extendleft(reversed(merges[unit.region]))


@contextmanager
def _stops_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM noted while the block starts worker processes, acted on after it:
    raised mid-start, they cut the pickled start data a spawned worker reads from its pipe,
    and that worker printed a traceback ("pickle data was truncated")."""
    got: list[int] = []
    try:
        previous = {s: signal.signal(s, lambda signum, _: got.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not this code's to take
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if got:
        signal.raise_signal(got[0])  # to the handler the caller had


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Ctrl-C blocked in the calling thread while it starts worker processes: a child
    inherits the mask, so one that is still importing when Ctrl-C reaches the process group
    keeps it pending (no traceback) until its initializer ignores it. The parent still stops:
    its other threads take the signal, or this one once the block ends."""
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask (Windows)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned children re-import the parent's `__main__` (by path or module name) before
    running anything: for the CLI that is typer, rich and DuckDB, ~35 MB in every worker that
    the generator never uses. Hidden while the pool starts its workers."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__} \
        if main is not None else {}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        yield
    finally:
        if main is not None:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def check_output(out: Path, force: bool, error: type[ValueError] = ConfigError) -> None:
    """Refuse an --out that may not be (re)placed by a new lake, before anything is deleted:
    writing one deletes a non-empty --out, so --force replaces only a previous lake (a directory
    holding _lake.json) or an empty directory. `error` is the caller's refusal (convert has its
    own)."""
    out = Path(out)
    try:
        _check_not_cwd(out, error)
        _check_not_in_a_lake(out, error)
        _check_replaceable(out, force, error)
        _check_creatable(out, error)
    except OSError as e:  # e.g. a parent we may not read: one line, not a traceback
        raise error(f"--out {out}: {e.strerror or e}") from None


def _check_not_cwd(out: Path, error: type[ValueError]) -> None:
    """Replacing the current directory or a parent of it would delete where we stand."""
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise error(f"--out {out} is the current directory or one of its parents: give a "
                    "directory of its own")


def _check_not_in_a_lake(out: Path, error: type[ValueError]) -> None:
    """A lake inside another lake: every audit of the outer one would report the inner one's
    rows as residue that no scrub of it can reach."""
    for parent in out.resolve().parents:
        if (parent / MANIFEST).is_file():
            raise error(f"--out {out} is inside the lake {parent}: give a directory outside it")


def _check_replaceable(out: Path, force: bool, error: type[ValueError]) -> None:
    if out.is_symlink():  # rmtree refuses a link, and what it points to is not ours to delete
        raise error(f"--out {out} is a symbolic link: give the directory itself")
    if out.exists() and not out.is_dir():
        raise error(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise error(f"--out {out} is not empty (use --force to replace it)")
        if not (out / MANIFEST).is_file() and not (out / UNFINISHED).is_file():
            raise error(f"--out {out} is not empty and holds no lake ({MANIFEST}): --force "
                        "replaces only a previous lake; choose another --out or empty it")


def _check_creatable(out: Path, error: type[ValueError]) -> None:
    """--out (and its missing parents) will be created in its nearest existing parent: probe
    that it can be, so a bad path is one line now rather than a traceback later (os.access
    says yes to root even where nothing can be created, as in /proc)."""
    parent = next(p for p in out.absolute().parents if p.exists())
    if not parent.is_dir():
        raise error(f"--out {out}: {parent} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".voicescrub-probe-", dir=parent))
    except OSError as e:
        raise error(f"--out {out} cannot be created in {parent}: {e.strerror or e}") from None


def generate(cfg: LakeConfig, out: Path, force: bool = False,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the lake under `out` and return its manifest."""
    check_output(out, force)
    t0 = time.perf_counter()
    units = [0, 0]  # done, total: what a failure reports
    with output_or_nothing(out, lambda written: OutOfRoom(out, written, *units)):
        mark_unfinished(out)
        manifest = _write_lake(cfg, out, t0, units, progress)
    (out / UNFINISHED).unlink()
    return manifest


# How a full disk reads in an engine's message (delta-rs, DuckDB: no errno attached)
_FULL_DISK_TEXT = ("no space left on device", "disk quota exceeded")


def disk_full(exc: BaseException) -> bool:
    """The filesystem (or the user's quota) is full, whoever raised it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, Exception) and any(t in str(exc).lower() for t in _FULL_DISK_TEXT)


@contextmanager
def output_or_nothing(out: Path, full: Callable[[int], Exception]) -> Iterator[None]:
    """Empty (or create) `out` for a new lake written in the block. Whatever stops the block
    (a failure, a full disk, Ctrl-C), what it wrote is a fraction of a lake that no command can
    use: it goes, and `out` is left as an empty directory if it existed before, else absent.
    A full disk raises `full(bytes written)`, Ctrl-C or SIGTERM GenerationStopped."""
    existed = out.exists()
    try:
        if existed:
            _empty_marked(out)
        out.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException as e:
        written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        _remove_settled(out)
        if existed:
            out.mkdir(parents=True, exist_ok=True)  # the directory the user gave, emptied
        if disk_full(e):
            raise full(written) from None
        if isinstance(e, KeyboardInterrupt | SystemExit):
            code = e.code if isinstance(e, SystemExit) else 130
            raise GenerationStopped(out, code if isinstance(code, int) else 1) from None
        raise


def _empty_marked(out: Path) -> None:
    """Empty a previous lake (or an empty directory) for a new one. The unfinished marker goes
    in first and out last, so a run killed outright while it deletes leaves a directory that
    `--force` still replaces, not a half-deleted lake it refuses as "not a lake"."""
    mark_unfinished(out)
    for child in out.iterdir():
        if child.name == UNFINISHED:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _remove_settled(out: Path, tries: int = 20, pause: float = 0.25) -> None:
    """Remove `out`, again while it comes back: delta-rs raises a write's error while its
    background tasks still hold buffered parts, which land after the error (measured: a full
    disk during `convert --to delta` left files written after the first removal)."""
    for _ in range(tries):
        shutil.rmtree(out, ignore_errors=True)
        time.sleep(pause)
        if not out.exists():
            return


def _write_lake(cfg: LakeConfig, out: Path, t0: float, units: list[int],
                progress: Callable[[int, int], None] | None) -> dict:
    """Every unit, then the manifest; `units` counts the units done and to do."""
    vocab = build_vocab(cfg.seed)
    first, second = plan_units(cfg)
    units[1] = len(first) + len(second)
    records: list[dict] = []
    worker_peak = 0.0
    pools: set[str] = set()

    def tick(recs: list[dict]) -> None:
        nonlocal worker_peak
        stats = [r for r in recs if "path" not in r]
        worker_peak = max([worker_peak, *(r["peak_rss_mb"] for r in stats)])
        pools.update(r["arrow_pool"] for r in stats)
        records.extend(r for r in recs if "path" in r)
        units[0] += 1
        if progress:
            progress(*units)

    _run_units(cfg, vocab, out, first, second, tick)
    shutil.rmtree(out / SPILL, ignore_errors=True)
    manifest = build_manifest(cfg, records, time.perf_counter() - t0)
    manifest["generation_peak_rss_mb"] = {"largest_worker": round(worker_peak, 1),
                                          "parent": round(peak_rss_mb(), 1)}
    manifest["generation_arrow_pool"] = sorted(pools)  # the Arrow allocator the units ran on
    write_manifest(out, manifest)
    return manifest


class GenerationStopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a lake was written; the partial lake has been removed."""

    def __init__(self, out: Path, exit_code: int) -> None:
        super().__init__(f"interrupted: the partial lake was removed ({out})")
        self.exit_code = exit_code


class OutOfRoom(Exception):
    """The disk filled while a lake was written; the partial lake has been removed."""

    def __init__(self, out: Path, written: int, done: int, total: int) -> None:
        whole = written * total / done / 1e9 if done else 0
        estimate = f"; at that rate the whole lake needs about {whole:,.2f} GB" if done else ""
        super().__init__(
            f"no space left on the device of {out} after writing {written / 1e9:,.2f} GB "
            f"({done} of {total} units){estimate}. The partial lake was removed: free some "
            "space, or generate a smaller lake (--sf, --days, --audio-bytes, --no-replicas)")


def _run_units(cfg: LakeConfig, vocab: Vocab, out: Path, first: list[Unit],
               second: list[Unit], tick: Callable[[list[dict]], None]) -> None:
    if cfg.n_workers == 1:
        _init_worker(cfg, vocab, str(out))
        for unit in first + second:
            tick(_run_unit(unit))
    else:
        # Each worker is single-threaded: parallelism comes from the processes.
        env = _worker_env()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            ctx = mp.get_context("spawn")
            with _main_module_hidden(), ProcessPoolExecutor(
                    cfg.n_workers, mp_context=ctx, initializer=_init_pool_worker,
                    initargs=(cfg, vocab, str(out))) as pool:
                try:
                    _schedule(pool, first, second, cfg.n_workers, tick)
                except BaseException:
                    _stop_workers(pool)
                    raise
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """After a failure or Ctrl-C: queued units never start and running ones stop at once
    (the partial lake they write into is about to be removed)."""
    workers = getattr(pool, "_processes", None) or {}  # pid -> Process (CPython's executor)
    for proc in list(workers.values()):
        proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def mark_unfinished(out: Path) -> None:
    """A lake being written: until its manifest is, this marker lets --force replace what a
    crashed run left (which has no manifest) without letting it replace any other directory."""
    (out / UNFINISHED).write_text("a voicescrub lake being written; remove it with its "
                                  "directory if the run that wrote it is gone\n")


def build_manifest(cfg: LakeConfig, records: list[dict], seconds: float) -> dict:
    records.sort(key=lambda r: r["path"])
    tables = {}
    for name, spec in TABLES.items():
        recs = [r for r in records if r["table"] == name]
        primary = [r for r in recs if r["region"] == r["origin"]]
        by_region = {reg: sum(r["rows"] for r in primary if r["region"] == reg)
                     for reg in cfg.regions}
        tables[name] = {
            "kind": spec.kind,
            "keys": list(spec.keys),
            "reach": spec.reach,
            "rows": sum(by_region.values()),
            "rows_by_region": by_region,
            "replica_rows": sum(r["rows"] for r in recs if r["region"] != r["origin"]),
            "bytes": sum(r["bytes"] for r in recs),  # every file, replicas included
            "replica_bytes": sum(r["bytes"] for r in recs if r["region"] != r["origin"]),
            "schema": {f.name: str(f.type) for f in spec.file_schema(cfg.layout)},
            "sort": list(spec.sort_date if cfg.layout == "date" else spec.sort_bucket),
            "bucket_key": spec.bucket_key if cfg.layout == "bucket" else None,
            "writer": writer_settings(spec, cfg.layout, cfg),
            "files": [{k: r[k] for k in ("path", "region", "origin", "rows", "bytes")}
                      for r in recs],
        }
    return {
        "generator": "voicescrub",
        "generator_version": GENERATOR_VERSION,
        "schema_version": SCHEMA_VERSION,
        "seed": cfg.seed,
        "sf": cfg.sf,
        "layout": cfg.layout,
        "regions": list(cfg.regions),
        "replicas": cfg.replica_of(),
        "utc_offsets": {r: UTC_OFFSET_H.get(r, 0) for r in cfg.regions},  # local days, no DST
        "partitioning": {
            "dimension": "<table>/region=<home region>/",
            "fact": ("<table>/region=<stored region>/origin=<origin region>/"
                     + ("date=YYYY-MM-DD/" if cfg.layout == "date" else "bucket=NNN/")),
            "replica_rule": "a fact row is a replica copy when region != origin",
        },
        "buckets": ({"count": cfg.n_buckets,
                     "int_keys": "splitmix64(uint64(key)) % count",
                     "string_keys": "fnv1a64(utf8(key)) % count"}
                    if cfg.layout == "bucket" else None),
        "config": cfg.to_json(),
        "generation_seconds": round(seconds, 3),
        "tables": tables,
    }


def write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)


def read_manifest(lake: Path) -> dict:
    path = Path(lake) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{lake} has no {MANIFEST}: not a voicescrub lake")
    return json.loads(path.read_text())
