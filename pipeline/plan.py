"""Plan: which files and row groups hold any key to erase, found by the cheapest sound means.

In order: bucket routing (a key can only live in its own bucket's files), row-group min/max
statistics (a key outside [min, max] is not there), Parquet bloom filters where the file has
them (no key within [min, max] tests positive: not there; `pipeline/bloom.py`), then reading
the key columns of the row groups that are left. The plan is exact: it knows how many rows each
file will lose, which the commit step checks against the rewritten file.

`VOICESCRUB_BLOOM=0` in the environment plans without reading bloom filters (to compare).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from generators.population import bucket_of_ints, bucket_of_strings
from pipeline import bloom
from pipeline.damage import UnreadableFile, UnreadableFiles, as_damage
from pipeline.kernels import cached_njit
from pipeline.lake import DataFile, Lake, open_parquet
from pipeline.signals import raise_stop, stop_requests, unless_stopped

Rule = tuple[str, str]  # (column, key kind)


@dataclass
class FilePlan:
    file: DataFile
    rules: tuple[Rule, ...]
    row_groups: tuple[int, ...] = ()  # row groups holding at least one key
    rows_matched: int = 0
    # "bucket", "stats" or "bloom" (or "no keys") when skipped without reading data: "bloom"
    # when bloom filters ruled out the row groups that statistics could not
    pruned_by: str | None = None
    row_groups_total: int = 0
    bytes_scanned: int = 0  # key columns and bloom filters read
    # row groups whose statistics may hold a key but whose bloom filters hold none: not read
    row_groups_pruned_by_bloom: int = 0
    # Row group -> positions (ascending) of its rows to erase, as the plan found them: the
    # rewrite can drop them without matching the keys again. Kept in memory only (a resumed
    # job re-plans nothing and lets the strategy match); never written to the journal.
    erase_rows: dict[int, np.ndarray] | None = field(default=None, repr=False)
    matched_values: pa.Table | None = field(default=None, repr=False)  # for key resolution
    # Row group -> the columns the plan read from it (with keep_columns): a strategy that
    # reads the rest only does not decode them twice. Memory only, freed by the rewrite.
    key_tables: dict[int, pa.Table] | None = field(default=None, repr=False)
    # The source as the plan opened it (with keep_columns, touched files only): the rewrite
    # reads the very file that was planned, without parsing its footer again. Memory only.
    source: pq.ParquetFile | None = field(default=None, repr=False)

    @property
    def touched(self) -> bool:
        return self.rows_matched > 0

    @property
    def rows_kept(self) -> int:
        return self.file.rows - self.rows_matched

    def to_json(self) -> dict:
        return {"path": self.file.path, "table": self.file.table, "rows": self.file.rows,
                "bytes": self.file.bytes, "rows_matched": self.rows_matched,
                "row_groups": list(self.row_groups), "row_groups_total": self.row_groups_total,
                "pruned_by": self.pruned_by, "rules": [list(r) for r in self.rules],
                "bytes_scanned": self.bytes_scanned,
                "row_groups_pruned_by_bloom": self.row_groups_pruned_by_bloom}


def key_array(values: Iterable | np.ndarray | pa.Array) -> pa.Array:
    """Sorted, unique key values as an Arrow array (the value set of every match)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.unique(arr.drop_null())
    return arr.take(pc.sort_indices(arr))


class IntKeyIndex:
    """Membership test for integer keys, built once per key set and reused for every file.

    A bitmap over a multiplicative hash of the value rejects almost every non-key with one
    bit test; the few candidates left are confirmed by binary search in the sorted keys. The
    bitmap has ~32 bits per key (at most 2^25 bits, 4 MiB), packed, so for 100k keys it is
    400 KiB and stays in L2; about 3 % of the non-keys get through to the binary search.
    """

    MAX_BITS = 25
    MIN_BITS = 12

    def __init__(self, sorted_keys: np.ndarray) -> None:
        self.keys = np.ascontiguousarray(sorted_keys, dtype=np.int64)
        want = int(np.ceil(np.log2(max(len(self.keys), 1) * 32)))
        self.bits = min(self.MAX_BITS, max(self.MIN_BITS, want))
        self._shift = np.uint64(64 - self.bits)
        slots = (self.keys.view(np.uint64) * _MULT) >> self._shift
        self.bitmap = np.zeros(1 << (self.bits - 6), dtype=np.uint64)
        np.bitwise_or.at(self.bitmap, slots >> np.uint64(6),
                         np.uint64(1) << (slots & np.uint64(63)))

    def contains(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=np.int64)
        if not len(self.keys):
            return np.zeros(len(values), dtype=bool)
        return _contains(values, self.bitmap, self._shift, self.keys)


_MULT = np.uint64(0x9E3779B97F4A7C15)


def warm_up() -> None:
    """Compile (or load from numba's cache) the key matching and bloom filter loops outside a
    timed region."""
    IntKeyIndex(np.array([1], np.int64)).contains(np.array([1, 2], np.int64))
    bloom.warm_up()


@cached_njit
def _contains(values, bitmap, shift, keys):
    """One pass: the bitmap rejects almost every non-key; a candidate is confirmed by binary
    search in the sorted keys. Compiled, and without the GIL, so planning threads overlap."""
    out = np.zeros(values.shape[0], np.bool_)
    for i in range(values.shape[0]):
        v = values[i]
        slot = (np.uint64(v) * _MULT) >> shift
        if (bitmap[slot >> np.uint64(6)] >> (slot & np.uint64(63))) & np.uint64(1):
            lo, hi = 0, keys.shape[0]
            while lo < hi:
                mid = (lo + hi) >> 1
                if keys[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            out[i] = lo < keys.shape[0] and keys[lo] == v
    return out


_INDEXES: dict[int, tuple[pa.Array, IntKeyIndex]] = {}


def _int_index(keys: pa.Array) -> IntKeyIndex:
    hit = _INDEXES.get(id(keys))
    if hit is None or hit[0] is not keys:
        if len(_INDEXES) > 32:
            _INDEXES.clear()
        hit = (keys, IntKeyIndex(keys.to_numpy()))
        _INDEXES[id(keys)] = hit
    return hit[1]


def match_np(column: pa.Array | pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """Boolean numpy mask: which values are keys to erase (null never matches)."""
    if isinstance(column, pa.ChunkedArray):
        # chunk by chunk: concatenating the chunks first would copy the column
        if column.num_chunks == 1:
            column = column.chunk(0)
        else:
            return np.concatenate([match_np(c, keys) for c in column.chunks] or
                                  [np.zeros(0, dtype=bool)])
    if pa.types.is_dictionary(column.type):
        # each distinct value matched once, then mapped to the rows (no decoding: Arrow 26
        # cannot even take from a string_view dictionary, as delta-rs writes them)
        hit = match_np(column.dictionary, keys)
        if column.null_count:
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            idx = pc.fill_null(column.indices, 0).to_numpy(zero_copy_only=False)
            return hit[idx] & valid if len(hit) else np.zeros(len(column), dtype=bool)
        idx = column.indices.to_numpy(zero_copy_only=False)
        return hit[idx] if len(hit) else np.zeros(len(column), dtype=bool)
    column = plain_views(column)
    if pa.types.is_integer(column.type) and pa.types.is_integer(keys.type):
        # pc.is_in would rebuild a hash set of the keys on every call (100k recording ids).
        if column.null_count:
            # nulls filled first: with them to_numpy would go through float64 and lose
            # precision above 2^53 (a key missed, or the wrong row matched)
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            values = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
            return _int_index(keys).contains(values) & valid
        return _int_index(keys).contains(column.to_numpy(zero_copy_only=False))
    if column.type != keys.type:
        keys = keys.cast(column.type)
    return pc.fill_null(pc.is_in(column, value_set=keys), False).to_numpy(zero_copy_only=False)


def is_view(t: pa.DataType) -> bool:
    """A view type, plain or as a dictionary's values (delta-rs writes string_view)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string_view(t) or pa.types.is_binary_view(t)


def plain_views(a: pa.Array) -> pa.Array:
    """View-typed values as their plain types (also a dictionary's): Arrow 26 has no take,
    filter or membership kernel for views. A row checksum hashes both alike."""
    if not is_view(a.type):
        return a
    if pa.types.is_dictionary(a.type):
        return pa.DictionaryArray.from_arrays(a.indices, plain_views(a.dictionary))
    return a.cast(pa.string() if pa.types.is_string_view(a.type) else pa.binary())


def match(column: pa.Array | pa.ChunkedArray, keys: pa.Array) -> pa.Array:
    """Boolean mask: which values are keys to erase (null never matches)."""
    return pa.array(match_np(column, keys), pa.bool_())


def _stats_range(stats, np_keys: np.ndarray | None, sorted_py: list | None
                 ) -> tuple[int, int] | None:
    """The (sorted) keys that may lie within a row group's [min, max], as a slice [a, b) of
    them; None without statistics (any key may)."""
    if stats is None or not stats.has_min_max:
        return None
    try:
        lo, hi = stats.min, stats.max
    except (ValueError, pa.ArrowException):  # e.g. a damaged string bound pyarrow cannot decode
        return None  # unusable statistics: the column is read
    exact = True
    if isinstance(lo, bytes):
        try:
            lo, hi = lo.decode(), hi.decode()
        except UnicodeDecodeError:
            lo, hi = lo.decode(errors="replace"), hi.decode(errors="replace")
            exact = False
    if np_keys is not None:
        n = len(np_keys)
        a = int(np.searchsorted(np_keys, lo, side="left"))
        b = int(np.searchsorted(np_keys, hi, side="right"))
    else:
        n = len(sorted_py)
        a, b = bisect.bisect_left(sorted_py, lo), bisect.bisect_right(sorted_py, hi)
    if not exact and b > a:  # bounds in doubt: they may rule a row group out, not keys
        return 0, n
    return a, b


def _stats_may_hold(stats, np_keys: np.ndarray | None, sorted_py: list | None) -> bool:
    """False only when no key can lie within a row group's [min, max]."""
    r = _stats_range(stats, np_keys, sorted_py)
    return r is None or r[1] > r[0]


# A table's bloom filters are probed for at least this many row groups; then only while the
# column bytes they spared outweigh the filter bytes they cost.
BLOOM_MIN_PROBES = 32


def bloom_enabled() -> bool:
    return os.environ.get("VOICESCRUB_BLOOM", "1").strip().lower() not in ("0", "false", "no",
                                                                           "off")


def _buckets(keys: pa.Array, n: int) -> set[int]:
    if pa.types.is_integer(keys.type):
        return set(bucket_of_ints(keys.to_numpy(), n).tolist())
    return set(bucket_of_strings(keys, n).tolist())


class Planner:
    def __init__(self, lake: Lake, keys: dict[str, pa.Array], workers: int = 2,
                 use_bloom: bool | None = None, trust_metadata: bool = True) -> None:
        """With `trust_metadata` off, every row group's key columns are read: no bucket
        routing, statistics or bloom filters (what `--verify deep` relies on, so that a
        damaged footer or a misplaced file cannot hide a key from it)."""
        self.lake, self.keys, self.workers = lake, keys, max(1, workers)
        self.trust_metadata = trust_metadata
        ints = {k for k, v in keys.items() if pa.types.is_integer(v.type)}
        self._np = {k: (v.to_numpy() if k in ints else None) for k, v in keys.items()}
        self._sorted_py = {k: (None if k in ints else v.to_pylist()) for k, v in keys.items()}
        self._bucket_sets: dict[str, set[int]] = {}
        self.use_bloom = bloom_enabled() if use_bloom is None else use_bloom
        # (key kind, hash kind) -> XXH64 of each key's PLAIN bytes, in sorted-key order:
        # hashed once per job, probed for every file (threads may race to fill it: same value)
        self._key_hashes: dict[tuple[str, str], np.ndarray] = {}
        # (table, rules) -> [row groups probed, filter bytes read, column bytes spared]
        self._bloom_ledger: dict[tuple[str, tuple[Rule, ...]], list[int]] = {}
        self._lock = threading.Lock()

    def plan_table(self, table: str, rules: list[Rule] | None = None,
                   values: tuple[str, ...] = ()) -> list[FilePlan]:
        """Plan every file of a table; with `values`, also return those columns of the
        matching rows (key resolution reads a mapping table this way)."""
        return self.plan_tables([(table, rules, values)])[0]

    def plan_tables(self, jobs: list[tuple[str, list[Rule] | None, tuple[str, ...]]]
                    ) -> list[list[FilePlan]]:
        """plan_table for several tables at once: every file of every table in one pool, so
        no table waits for the slowest file of the one before."""
        specs = []
        for table, rules, values in jobs:
            if rules is None:
                rules = [(r.column, r.key) for r in self.lake.lineage.rules_for(table)]
            specs.append((tuple(rules), tuple(values)))
        work = [(j, f) for j, (table, _, _) in enumerate(jobs) for f in self.lake.files(table)]

        def one(item: tuple[int, DataFile]) -> FilePlan | UnreadableFile:
            j, f = item
            try:
                return self.plan_file(f, *specs[j])
            except Exception as e:  # noqa: BLE001 (classified: a damaged file is named)
                damage = as_damage(e, self.lake.root, f.path)
                if damage is e:
                    raise
                return damage

        # Ctrl-C or SIGTERM stops the planning once the files in flight are done (it writes
        # nothing), not after every file of the lake
        with ThreadPoolExecutor(self.workers) as pool, stop_requests() as stop:
            futures = [pool.submit(unless_stopped, stop, one, item) for item in work]
            pending = set(futures)
            while pending and stop.signum is None:
                _, pending = wait(pending, timeout=0.2)
            if stop.signum is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise_stop(stop.signum)
        if stop.signum is not None:  # arrived after the last look, before the handlers went
            raise_stop(stop.signum)
        plans = [fut.result() for fut in futures]
        unreadable = [p for p in plans if isinstance(p, UnreadableFile)]
        if unreadable:
            raise UnreadableFiles(unreadable, committed=0)  # planning changes nothing
        out: list[list[FilePlan]] = [[] for _ in jobs]
        for (j, _), fp in zip(work, plans, strict=True):
            out[j].append(fp)
        return out

    def _routed_out(self, f: DataFile, rules: tuple[Rule, ...]) -> bool:
        """Bucket routing: every rule's keys hash to other buckets than this file's."""
        n = self.lake.n_buckets
        if not n or "bucket" not in f.partition or self.lake.manifest is None:
            return False
        bucket_key = self.lake.manifest["tables"][f.table].get("bucket_key")
        if any(col != bucket_key for col, _ in rules):
            return False
        bucket = int(f.partition["bucket"])
        for _, kind in rules:
            if kind not in self._bucket_sets:
                self._bucket_sets[kind] = _buckets(self.keys[kind], n)
            if bucket in self._bucket_sets[kind]:
                return False
        return True

    def _hashes(self, kind: str, hash_kind: str) -> np.ndarray:
        h = self._key_hashes.get((kind, hash_kind))
        if h is None:
            h = bloom.hash_keys(self.keys[kind], hash_kind)
            self._key_hashes[(kind, hash_kind)] = h
        return h

    def _may_have_bloom(self, table: str) -> bool:
        """False when the manifest says the table was written without bloom filters (then
        no footer is searched for them); True when it says they were, or cannot say."""
        tables = (self.lake.manifest or {}).get("tables", {})
        writer = tables.get(table, {}).get("writer")
        return writer is None or bool(writer.get("bloom_filter_options"))

    def _bloom_pays(self, table: str, rules: tuple[Rule, ...]) -> bool:
        """Whether to keep probing a table's filters: until BLOOM_MIN_PROBES row groups were
        probed, then while the column bytes they spared outweigh the filter bytes they cost
        (with keys in most row groups, as when a few customers reach every day's file, they
        do not). Only ever decides whether to read a filter, never what a filter means."""
        ledger = self._bloom_ledger.get((table, tuple(rules)))
        return ledger is None or ledger[0] < BLOOM_MIN_PROBES or ledger[2] >= ledger[1]

    def _bloom_prune(self, f: DataFile, pf: pq.ParquetFile, schema: pa.Schema,
                     idx: dict[str, int], col_idx: list[int], in_range: list[list],
                     plan: FilePlan) -> list[int]:
        """The row groups to read: those where some rule's statistics may hold a key and its
        bloom filter (if any) may too. A row group is probed only when every rule its
        statistics leave has a filter this planner can use, smaller than the columns it
        would spare; a filter it cannot read or parse counts as "may hold" (the column is
        read instead). Counts the row groups the filters ruled out and the bytes read."""
        md = pf.metadata
        usable: dict[str, str | None] = {}  # column -> hash kind, or None
        probes: list[tuple[int, str, str, tuple[int, int] | None]] = []
        spans: list[tuple[int, int | None]] = []
        spared: dict[int, int] = {}  # probed row group -> bytes of the columns a "no" spares
        candidates: list[int] = []
        for i, held in enumerate(in_range):
            if not held:
                continue
            mine, my_spans = [], []
            for c, k, r, cc in held:
                off = cc.bloom_filter_offset
                if off is not None and off > 0 and c not in usable:
                    usable[c] = (bloom.hash_kind(schema.field(idx[c]).type, cc.physical_type,
                                                 self.keys[k].type)
                                 if cc.path_in_schema == c else None)
                if off is None or off <= 0 or usable[c] is None:
                    break  # this rule's column must be read anyway: no filter can spare it
                mine.append((i, c, k, r))
                my_spans.append((off, cc.bloom_filter_length))
            else:
                rg = md.row_group(i)
                size = sum(rg.column(j).total_compressed_size for j in col_idx)
                if sum(n or 0 for _, n in my_spans) < size:
                    probes += mine
                    spans += my_spans
                    spared[i] = size
                    continue
            candidates.append(i)
        if not probes:
            return candidates
        reader = bloom.FilterReader(self.lake.root / f.path)
        try:
            filters = reader.read(spans)
        except OSError:
            filters = [None] * len(spans)
        plan.bytes_scanned += reader.bytes_read
        maybe: set[int] = set()
        for (i, c, k, r), words in zip(probes, filters, strict=True):
            if i in maybe:
                continue
            if words is None:  # unreadable or unsupported: the column decides
                maybe.add(i)
                continue
            hashes = self._hashes(k, usable[c])
            if r is not None:
                hashes = hashes[r[0]:r[1]]
            if bloom.may_contain_any(words, hashes):
                maybe.add(i)
        pruned = spared.keys() - maybe
        plan.row_groups_pruned_by_bloom = len(pruned)
        with self._lock:
            ledger = self._bloom_ledger.setdefault((f.table, tuple(plan.rules)), [0, 0, 0])
            ledger[0] += len(spared)
            ledger[1] += reader.bytes_read
            ledger[2] += sum(spared[i] for i in pruned)
        return sorted([*candidates, *maybe])

    def plan_file(self, f: DataFile, rules: tuple[Rule, ...], values: tuple[str, ...] = (),
                  keep_columns: bool = False) -> FilePlan:
        """Which row groups and rows of a file hold a key. With `keep_columns`, the columns
        read from row groups that hold one stay on the plan (`key_tables`), and so does the
        open file (`source`) when it holds a key."""
        plan = FilePlan(f, rules)
        if all(len(self.keys[k]) == 0 for _, k in rules):
            plan.pruned_by = "no keys"
            return plan
        if self.trust_metadata and self._routed_out(f, rules):
            plan.pruned_by = "bucket"
            return plan
        pf = open_parquet(self.lake.root / f.path)
        md = pf.metadata
        plan.row_groups_total = md.num_row_groups
        schema = pf.schema_arrow
        names = schema.names
        idx = {c: names.index(c) for c, _ in rules if c in names}
        cols = list(dict.fromkeys([c for c, _ in rules if c in idx] + list(values)))
        if not self.trust_metadata:
            candidates = list(range(md.num_row_groups))
        elif not (self.use_bloom and self._may_have_bloom(f.table)
                  and self._bloom_pays(f.table, rules)):
            # statistics only: a row group is read once any rule may hold a key
            candidates = [i for i in range(md.num_row_groups) if any(
                _stats_may_hold(md.row_group(i).column(idx[c]).statistics, self._np[k],
                                self._sorted_py[k]) for c, k in rules if c in idx)]
            if not candidates:
                plan.pruned_by = "stats"
                return plan
        else:
            # per row group: the rules whose statistics may hold a key, with the slice of the
            # (sorted) keys they may hold and the column chunk's metadata
            in_range: list[list] = []
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                held = []
                for c, k in rules:
                    if c not in idx:
                        continue
                    cc = rg.column(idx[c])
                    r = _stats_range(cc.statistics, self._np[k], self._sorted_py[k])
                    if r is None or r[1] > r[0]:
                        held.append((c, k, r, cc))
                in_range.append(held)
            if not any(in_range):
                plan.pruned_by = "stats"
                return plan
            candidates = self._bloom_prune(f, pf, schema, idx, [names.index(c) for c in cols],
                                           in_range, plan)
            if not candidates:
                plan.pruned_by = "bloom"
                return plan
        matched_rgs, total, parts, erase_rows, kept = [], 0, [], {}, {}
        for i in candidates:
            t = pf.read_row_group(i, columns=cols, use_threads=False)
            plan.bytes_scanned += sum(md.row_group(i).column(names.index(c)).total_compressed_size
                                      for c in cols)
            mask = None
            for c, k in rules:
                if c not in idx:
                    continue
                m = match_np(t[c], self.keys[k])
                mask = m if mask is None else (mask | m)
            rows = np.flatnonzero(mask)
            if len(rows):
                matched_rgs.append(i)
                total += len(rows)
                erase_rows[i] = rows.astype(np.int32 if len(mask) < 2**31 else np.int64)
                if values:
                    parts.append(t.select(list(values)).take(rows))
                if keep_columns:
                    kept[i] = t
        plan.row_groups = tuple(matched_rgs)
        plan.key_tables = kept if keep_columns and kept else None
        if keep_columns and matched_rgs:
            plan.source = pf
        plan.rows_matched = total
        plan.erase_rows = erase_rows
        if values and parts:
            plan.matched_values = pa.concat_tables(parts)
        return plan
