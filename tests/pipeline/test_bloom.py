"""Bloom filters: XXH64 and the split-block filter agree with the reference and with the
filters pyarrow writes (never a false negative); the planner prunes row groups by them on a
lake generated with filters, the scrub still erases every row, and a filter it cannot trust
sends it back to reading the column."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import bloom
from pipeline.intake import parse_ids
from pipeline.lake import Lake
from pipeline.plan import Planner, key_array
from pipeline.scrub import plan_scrub
from tests.pipeline.conftest import _make, _shared, snapshot
from tests.pipeline.test_scrub import check_scrub

_n = count()

# XXH64, seed 0: "abc" and the 39-byte sentence are the xxHash and python-xxhash documentation's
# examples; the rest were computed with the reference C library (libxxhash 0.8).
VECTORS = [
    (b"", 0xEF46DB3751D8E999),
    (b"a", 0xD24EC4F1A98C6E5B),
    (b"abc", 0x44BC2CF5AD770999),
    (b"message digest", 0x066ED728FCEEB3BE),
    (b"abcdefghijklmnopqrstuvwxyz", 0xCFE1F278FA89835C),
    (b"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1),
    (bytes(range(100)), 0x6AC1E58032166597),
]
INT64_VECTORS = [(0, 0x34C96ACDCADB1BBB), (1, 0x9F29CB17A2A49995), (-1, 0x85D136ADB773C6C9),
                 (2**63 - 1, 0xFF70CC60366E770C), (123456789, 0xCB7C2941B198004D)]
INT32_VECTORS = [(0, 0x3AEFA6FD5CF2DEB4), (1, 0xF42F94001FCB5351), (-1, 0x7F78E4BDA3ADDF93),
                 (2**31 - 1, 0x293BB5F36EDFE474)]


def _reference():
    """The reference XXH64 (libxxhash through ctypes), where the system has it."""
    name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.XXH64.restype = ctypes.c_uint64
    lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    return lambda b: lib.XXH64(b, len(b), 0)


REFERENCE = _reference()


# --- XXH64 --------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_xxh64_known_vectors(data: bytes, expected: int) -> None:
    assert bloom.xxh64(data) == expected


def test_xxh64_of_integers_is_that_of_their_plain_bytes() -> None:
    values = np.array([v for v, _ in INT64_VECTORS], np.int64).view(np.uint64)
    assert bloom.xxh64_u64(values).tolist() == [h for _, h in INT64_VECTORS]
    values = np.array([v for v, _ in INT32_VECTORS], np.int64).view(np.uint64)
    assert bloom.xxh64_u32(values).tolist() == [h for _, h in INT32_VECTORS]
    for v, h in INT64_VECTORS:
        assert bloom.xxh64(struct.pack("<q", v)) == h
    for v, h in INT32_VECTORS:
        assert bloom.xxh64(struct.pack("<i", v)) == h


@pytest.mark.skipif(REFERENCE is None, reason="libxxhash is not installed")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=140), max_size=20),
       st.lists(st.integers(-2**63, 2**63 - 1), max_size=20))
def test_xxh64_matches_the_reference(strings: list[bytes], ints: list[int]) -> None:
    arr = pa.array(strings, pa.binary())
    assert bloom.hash_keys(arr, "bytes").tolist() == [REFERENCE(s) for s in strings]
    keys = pa.array(ints, pa.int64())
    assert bloom.hash_keys(keys, "int64").tolist() == [REFERENCE(struct.pack("<q", v))
                                                       for v in ints]
    assert bloom.hash_keys(keys, "int32").tolist() == [
        REFERENCE(struct.pack("<I", v & 0xFFFFFFFF)) for v in ints]


# --- the filters pyarrow writes -----------------------------------------------------------


def _filters(path: Path) -> dict[tuple[int, str], np.ndarray]:
    md = pq.ParquetFile(path).metadata
    spans, keys = [], []
    for g in range(md.num_row_groups):
        for j in range(md.num_columns):
            cc = md.row_group(g).column(j)
            if cc.bloom_filter_offset is not None:
                spans.append((cc.bloom_filter_offset, cc.bloom_filter_length))
                keys.append((g, cc.path_in_schema))
    words = bloom.FilterReader(path).read(spans)
    assert all(w is not None for w in words)
    return dict(zip(keys, words, strict=True))


def _kind(path: Path, column: str, keys: pa.Array) -> str:
    md = pq.ParquetFile(path).metadata
    j = [md.schema.column(i).name for i in range(md.num_columns)].index(column)
    kind = bloom.hash_kind(pq.read_schema(path).field(column).type,
                           md.row_group(0).column(j).physical_type, keys.type)
    assert kind is not None
    return kind


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ints=st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=400, unique=True),
       words=st.lists(st.text(max_size=12), min_size=1, max_size=300, unique=True),
       rows_per_group=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_every_present_value_tests_positive(tmp_path_factory: pytest.TempPathFactory,
                                            ints: list[int], words: list[str],
                                            rows_per_group: int, seed: int) -> None:
    n = max(len(ints), len(words))
    i64 = pa.array([ints[i % len(ints)] for i in range(n)], pa.int64())
    strings = pa.array([words[i % len(words)] for i in range(n)], pa.string())
    i32 = pa.array((np.asarray(i64.to_numpy()) % 2**32 - 2**31).astype(np.int32))
    table = pa.table({"i64": i64, "s": strings, "i32": i32,
                      "sd": strings.dictionary_encode(), "i8": pa.array(
                          (np.asarray(i64.to_numpy()) % 256 - 128).astype(np.int8))})
    path = tmp_path_factory.mktemp("bloom") / "t.parquet"
    pq.write_table(table, path, row_group_size=rows_per_group, use_dictionary=["sd"],
                   bloom_filter_options={c: True for c in table.column_names})
    filters = _filters(path)
    rng = np.random.default_rng(seed)
    for g in range(pq.ParquetFile(path).metadata.num_row_groups):
        part = table.slice(g * rows_per_group, rows_per_group)
        for col in table.column_names:
            present = key_array(part[col].combine_chunks().cast(
                pa.string() if col == "sd" else part[col].type))
            hashes = bloom.hash_keys(present, _kind(path, col, present))
            assert bloom.may_contain(filters[(g, col)], hashes).all(), (g, col)
            assert bloom.may_contain_any(filters[(g, col)], hashes)
        # values that are not there: almost all test negative (pyarrow aims at 1-5 %)
        absent = np.setdiff1d(rng.integers(-2**63, 2**63 - 1, 2000, dtype=np.int64),
                              part["i64"].to_numpy())
        fp = bloom.may_contain(filters[(g, "i64")], bloom.hash_keys(pa.array(absent), "int64"))
        assert fp.mean() < 0.2
        others = pa.array([f"\x00absent {i}" for i in range(2000)])
        fp = bloom.may_contain(filters[(g, "s")], bloom.hash_keys(others, "bytes"))
        assert fp.mean() < 0.2


def test_hash_kind_refuses_what_it_cannot_hash() -> None:
    assert bloom.hash_kind(pa.int64(), "INT64", pa.int64()) == "int64"
    assert bloom.hash_kind(pa.int16(), "INT32", pa.int64()) == "int32"
    assert bloom.hash_kind(pa.dictionary(pa.int32(), pa.string()), "BYTE_ARRAY",
                           pa.string()) == "bytes"
    assert bloom.hash_kind(pa.int64(), "INT64", pa.string()) is None  # string keys, int col
    assert bloom.hash_kind(pa.string(), "BYTE_ARRAY", pa.int64()) is None
    assert bloom.hash_kind(pa.timestamp("us"), "INT64", pa.int64()) is None
    assert bloom.hash_kind(pa.int64(), "INT32", pa.int64()) is None  # not its PLAIN width
    assert bloom.hash_kind(pa.string(), "FIXED_LEN_BYTE_ARRAY", pa.string()) is None


# --- headers it refuses -------------------------------------------------------------------


def _header(num_bytes: int, algorithm: bytes = b"\x1c\x1c\x00\x00",
            hash_: bytes = b"\x1c\x1c\x00\x00", compression: bytes = b"\x1c\x1c\x00\x00",
            extra: bytes = b"") -> bytes:
    zz = (num_bytes << 1) ^ (num_bytes >> 31)
    varint = b""
    while True:
        b, zz = zz & 0x7F, zz >> 7
        varint += bytes([b | (0x80 if zz else 0)])
        if not zz:
            break
    return b"\x15" + varint + algorithm + hash_ + compression + extra + b"\x00"


def test_parse_header_reads_what_pyarrow_writes(tmp_path: Path) -> None:
    pq.write_table(pa.table({"k": pa.array(np.arange(5000, dtype=np.int64))}), tmp_path / "f",
                   bloom_filter_options={"k": True})
    cc = pq.ParquetFile(tmp_path / "f").metadata.row_group(0).column(0)
    with open(tmp_path / "f", "rb") as fh:
        fh.seek(cc.bloom_filter_offset)
        raw = fh.read(cc.bloom_filter_length)
    num_bytes, start = bloom.parse_header(raw)
    assert start + num_bytes == cc.bloom_filter_length
    assert raw[:start] == _header(num_bytes)
    assert bloom.parse_header(_header(1024)) == (1024, len(_header(1024)))


@pytest.mark.parametrize("bad", [
    _header(1024, algorithm=b"\x2c\x00\x00"),  # an algorithm other than BLOCK (member 2)
    _header(1024, hash_=b"\x2c\x00\x00"),  # a hash other than XXHASH
    _header(1024, compression=b"\x2c\x00\x00"),  # a compressed bitset
    _header(1024, algorithm=b"\x1c\x15\x02\x00\x00"),  # BLOCK with a field unknown here
    _header(1024, algorithm=b"\x1c\x1c\x00\x2c\x00\x00"),  # a union with two members
    _header(1024, extra=b"\x15\x02"),  # a fifth header field
    _header(1000),  # not whole 32-byte blocks
    _header(0),
    _header(-32),
    _header(1 << 30),  # beyond any writer's maximum
    b"\x15\x80\x10\x1c\x1c\x00\x00",  # cut short
    b"\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # the pre-Thrift layout
    b"",
    b"\x15\xff\xff\xff\xff\xff\xff",  # an overlong varint
])
def test_unsupported_or_corrupt_headers_are_refused(bad: bytes) -> None:
    with pytest.raises(bloom.BloomError):
        bloom.bitset_of(bad + bytes(1 << 12), None)


def test_bitset_must_match_the_footer_length_and_lie_in_the_buffer() -> None:
    head = _header(64)
    assert len(bloom.bitset_of(head + bytes(64), len(head) + 64)) == 16
    with pytest.raises(bloom.BloomError):
        bloom.bitset_of(head + bytes(64), len(head) + 96)
    with pytest.raises(bloom.BloomError):
        bloom.bitset_of(head + bytes(32), None)


def test_reader_without_footer_lengths_and_coalesced_reads(tmp_path: Path) -> None:
    t = pa.table({"a": pa.array(np.arange(3000, dtype=np.int64)),
                  "b": pa.array([str(i) for i in range(3000)])})
    pq.write_table(t, tmp_path / "f", row_group_size=1000, bloom_filter_options={"a": True,
                                                                                  "b": True})
    md = pq.ParquetFile(tmp_path / "f").metadata
    ccs = [md.row_group(g).column(j) for g in range(3) for j in range(2)]
    sized = bloom.FilterReader(tmp_path / "f")
    a = sized.read([(c.bloom_filter_offset, c.bloom_filter_length) for c in ccs])
    unsized = bloom.FilterReader(tmp_path / "f")
    b = unsized.read([(c.bloom_filter_offset, None) for c in ccs])  # an older footer
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert sized.bytes_read == sum(c.bloom_filter_length for c in ccs)  # adjacent: one read
    # a span outside the file is refused, not read
    size = (tmp_path / "f").stat().st_size
    assert bloom.FilterReader(tmp_path / "f").read([(size - 8, 64), (size + 10, None)]) == \
        [None, None]
    assert bloom.coalesce([(0, 10), (100_000, 10), (12, 5)], gap=8) == [
        (0, 17, [0, 2]), (100_000, 10, [1])]


# --- the planner on a lake with bloom filters ---------------------------------------------


@pytest.fixture(scope="session")
def bloom_src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _shared(_make(tmp_path_factory, "date", bloom_filters=True))


@pytest.fixture(scope="session")
def bloom_bucket_src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _shared(_make(tmp_path_factory, "bucket", buckets=8, bloom_filters=True))


IDS = [3, 14, 15, 92, 10**9]


def _rows_by_file(plan) -> dict[str, int]:  # noqa: ANN001
    return {fp.file.path: fp.rows_matched for fp in plan.files}


def _holds_key(lake: Path, fp, keys: dict[str, pa.Array]) -> bool:  # noqa: ANN001
    t = pq.read_table(lake / fp.file.path, columns=[c for c, _ in fp.rules])
    return any(set(t[c].to_pylist()) & set(keys[k].to_pylist()) for c, k in fp.rules)


@pytest.mark.parametrize("layout", ["bloom_src", "bloom_bucket_src"])
def test_plan_prunes_by_bloom_and_matches_the_plan_without(
        request: pytest.FixtureRequest, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = request.getfixturevalue(layout)
    lake = Lake.open(src)
    with_bloom = plan_scrub(lake, parse_ids(",".join(map(str, IDS))), 2)
    monkeypatch.setenv("VOICESCRUB_BLOOM", "0")
    without = plan_scrub(lake, parse_ids(",".join(map(str, IDS))), 2)
    assert _rows_by_file(with_bloom) == _rows_by_file(without)
    assert sum(fp.rows_matched for fp in with_bloom.files) > 0
    assert not any(fp.pruned_by == "bloom" or fp.row_groups_pruned_by_bloom
                   for fp in without.files)
    pruned = [fp for fp in with_bloom.files if fp.pruned_by == "bloom"]
    assert pruned, "bloom filters ruled out no file"
    assert sum(fp.row_groups_pruned_by_bloom for fp in with_bloom.files) >= len(pruned)
    for fp in pruned:  # checked independently: the file holds none of the keys
        assert fp.bytes_scanned > 0  # the filters were read, and counted
        assert 0 < fp.to_json()["row_groups_pruned_by_bloom"] <= fp.row_groups_total
        assert not _holds_key(src, fp, with_bloom.keys), fp.file.path
    assert sum(fp.bytes_scanned for fp in with_bloom.files) < \
        sum(fp.bytes_scanned for fp in without.files)


@pytest.mark.parametrize("layout", ["bloom_src", "bloom_bucket_src"])
def test_scrub_with_bloom_pruning_erases_every_row(request: pytest.FixtureRequest,
                                                   tmp_path: Path, layout: str) -> None:
    src = request.getfixturevalue(layout)
    receipt = check_scrub(src, tmp_path / f"lake{next(_n)}", IDS, "arrow")
    assert receipt["totals"]["rows_erased"] > 0


def _corrupt_filters(lake: Path, rel: str, column: str, patch) -> None:  # noqa: ANN001
    """Rewrite every bloom filter header of a column in a lake file (a copy, not the
    hard-linked source), keeping the file's size."""
    path = lake / rel
    data = bytearray(path.read_bytes())
    md = pq.ParquetFile(path).metadata
    j = [md.schema.column(i).name for i in range(md.num_columns)].index(column)
    for g in range(md.num_row_groups):
        cc = md.row_group(g).column(j)
        patch(data, cc.bloom_filter_offset, cc.bloom_filter_length)
    path.unlink()
    path.write_bytes(bytes(data))


def _member2(data: bytearray, off: int, length: int) -> None:
    pos = data.index(b"\x1c\x1c\x00\x00", off)  # the algorithm union: member 2, unknown
    data[pos + 1] = 0x2C


def _wrong_size(data: bytearray, off: int, length: int) -> None:
    if data[off + 1] & 0x80:  # a two-byte numBytes: 8160, whole blocks, not the footer's
        data[off + 1:off + 3] = b"\xc0\x7f"
    else:  # one byte (32): 31
        data[off + 1] = 0x3E


def _zero_header(data: bytearray, off: int, length: int) -> None:
    data[off:off + 16] = bytes(16)


@pytest.mark.parametrize("patch", [_member2, _wrong_size, _zero_header])
def test_a_filter_it_cannot_trust_falls_back_to_reading_the_column(
        bloom_src: Path, tmp_path: Path, patch) -> None:  # noqa: ANN001
    keys = {"customer_id": key_array(pa.array([3, 14, 15], pa.int64()))}
    rules = (("customer_id", "customer_id"),)
    planner = Planner(Lake.open(bloom_src), keys, 1, use_bloom=True)
    plans = {f.path: planner.plan_file(f, rules) for f in Lake.open(bloom_src).files("audio")}
    held = next(p for p in plans.values() if p.rows_matched)
    pruned = next(p for p in plans.values() if p.pruned_by == "bloom")
    work = snapshot(bloom_src, tmp_path / "lake")
    for fp in (held, pruned):
        _corrupt_filters(work, fp.file.path, "customer_id", patch)
    planner = Planner(Lake.open(work), keys, 1, use_bloom=True)
    again = planner.plan_file(held.file, rules)
    assert again.rows_matched == held.rows_matched and again.pruned_by is None
    assert again.row_groups == held.row_groups
    again = planner.plan_file(pruned.file, rules)  # read, not ruled out by a bad filter
    assert again.pruned_by is None and again.rows_matched == 0
    assert again.row_groups_pruned_by_bloom == 0
    assert (bloom_src / held.file.path).read_bytes() != (work / held.file.path).read_bytes()
    shutil.rmtree(work)


def test_filters_that_do_not_pay_are_no_longer_probed(bloom_src: Path) -> None:
    lake = Lake.open(bloom_src)
    keys = {"customer_id": key_array(pa.array([3, 14, 15], pa.int64()))}
    rules = (("customer_id", "customer_id"),)
    planner = Planner(lake, keys, 1, use_bloom=True)
    files = lake.files("audio")
    first = [planner.plan_file(f, rules) for f in files]
    assert any(p.pruned_by == "bloom" for p in first)
    # the ledger says this table's filters cost more than they spared: read instead
    planner._bloom_ledger[("audio", rules)] = [10**6, 10**9, 0]
    second = [planner.plan_file(f, rules) for f in files]
    assert not any(p.pruned_by == "bloom" for p in second)
    assert [p.rows_matched for p in first] == [p.rows_matched for p in second]


def test_disabled_by_the_environment(monkeypatch: pytest.MonkeyPatch, bloom_src: Path) -> None:
    monkeypatch.setenv("VOICESCRUB_BLOOM", "0")
    lake = Lake.open(bloom_src)
    assert not Planner(lake, {}).use_bloom
    monkeypatch.setenv("VOICESCRUB_BLOOM", "1")
    assert Planner(lake, {}).use_bloom
    assert not Planner(lake, {}, use_bloom=False).use_bloom


def _lake_values(src: Path, table: str, column: str) -> list:
    return sorted(set(pq.read_table(src / table, columns=[column])[column].to_pylist()))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bloom_never_changes_what_the_plan_finds(bloom_src: Path, data: st.DataObject) -> None:
    lake = Lake.open(bloom_src)
    keys = {
        "customer_id": data.draw(st.lists(st.integers(1, 400), max_size=8)),
        "recording_id": data.draw(st.lists(st.sampled_from(
            _lake_values(bloom_src, "actions", "recording_id")), max_size=30)),
        "skill_user_id": data.draw(st.lists(st.sampled_from(
            _lake_values(bloom_src, "skill_events", "skill_user_id")) | st.text(max_size=8),
            max_size=6)),
    }
    keys = {k: key_array(pa.array(v, pa.string() if k == "skill_user_id" else pa.int64()))
            for k, v in keys.items()}
    jobs = [(t, [(c, k)], ()) for t, c, k in [
        ("audio", "customer_id", "customer_id"), ("usage_daily", "customer_id", "customer_id"),
        ("actions", "recording_id", "recording_id"),
        ("skill_events", "skill_user_id", "skill_user_id")]]
    with_bloom = Planner(lake, keys, 2, use_bloom=True).plan_tables(jobs)
    without = Planner(lake, keys, 2, use_bloom=False).plan_tables(jobs)
    for a, b in zip(with_bloom, without, strict=True):
        assert [(p.file.path, p.row_groups, p.rows_matched) for p in a] == \
            [(p.file.path, p.row_groups, p.rows_matched) for p in b]


class _Stats:
    has_min_max = True

    def __init__(self, lo, hi) -> None:  # noqa: ANN001
        self.min, self.max = lo, hi


def test_stats_range_slices_the_keys_a_row_group_may_hold() -> None:
    from pipeline.plan import _stats_may_hold, _stats_range

    ints = np.array([1, 5, 9, 20], np.int64)
    assert _stats_range(_Stats(4, 9), ints, None) == (1, 3)
    assert _stats_range(_Stats(10, 19), ints, None) == (3, 3)
    assert not _stats_may_hold(_Stats(10, 19), ints, None)
    assert _stats_range(None, ints, None) is None
    words = ["a", "b", "d"]
    assert _stats_range(_Stats(b"b", b"c"), None, words) == (1, 2)
    # bounds that are not UTF-8: they may still rule the row group out, but not keys
    assert _stats_range(_Stats(b"a\xff", b"c"), None, words) == (0, 3)
    assert not _stats_may_hold(_Stats(b"x\xff", b"z"), None, words)
