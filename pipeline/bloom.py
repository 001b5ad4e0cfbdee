"""Parquet split-block bloom filters (SBBF), read straight from a file: can a row group hold a key?

The format (apache/parquet-format, BloomFilter.md): a column chunk's filter is a Thrift-compact
`BloomFilterHeader` (numBytes; algorithm BLOCK; hash XXHASH; compression UNCOMPRESSED) followed
by `numBytes` of bitset: z blocks of eight little-endian 32-bit words. A value is hashed with
XXH64 (seed 0) of its PLAIN bytes (INT32: 4 bytes, INT64: 8 bytes, little-endian; BYTE_ARRAY:
the bytes themselves, without the length prefix); the hash's top 32 bits pick the block,
((h >> 32) * z) >> 32, and its low 32 bits `x` one bit in each word i: (x * SALT[i] mod 2^32)
>> 27. The value may be present only if all eight bits are set.

What makes this sound (a filter never rules out a row group that holds a key): a filter is used
only when everything about it is what this module implements — a header it parses completely
(any field, union member or size it does not know is refused), a bitset of whole blocks that
lies inside the file, a column of a physical type whose PLAIN bytes the key is hashed by. Any
doubt returns None and the caller reads the column instead. A filter's answer is then only ever
"no key" or "maybe": false positives cost a read, never a wrong plan.

Keys are hashed once per key set and physical type (vectorized, compiled, without the GIL) and
tested against each filter in one compiled pass.
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np
import pyarrow as pa

from pipeline import thrift_compact as thrift
from pipeline.kernels import cached_njit

# XXH64's rotation and final avalanche, which the row checksum's hash uses too
from pipeline.rowhash import _fmix as _avalanche
from pipeline.rowhash import _rotl

# XXH64 (xxHash spec 0.1.1)
_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_M32 = np.uint64(0xFFFFFFFF)

SALT = np.array([0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D,
                 0x705495C7, 0x2DF1424B, 0x9EFC4947, 0x5C6BFB31], dtype=np.uint64)
BLOCK_BYTES = 32
MAX_FILTER_BYTES = 128 << 20  # what parquet-mr and Arrow write at most
HEADER_PROBE = 64  # bytes read for a header when the footer does not give the filter's length


class BloomError(thrift.CompactError):
    """A filter this module does not understand: the caller reads the column instead."""


# --- XXH64 --------------------------------------------------------------------------------


@nb.njit(inline="always")
def _round(acc, lane):
    return _rotl(acc + lane * _P2, 31) * _P1


@nb.njit(inline="always")
def _le(data, pos, n):
    """n bytes of data at pos as a little-endian unsigned integer (any alignment, any host)."""
    v = np.uint64(0)
    for j in range(n):
        v |= np.uint64(data[pos + j]) << np.uint64(8 * j)
    return v


@cached_njit
def xxh64_u64(values):
    """XXH64 (seed 0) of each value's 8 little-endian bytes (INT64's PLAIN encoding)."""
    out = np.empty(values.shape[0], np.uint64)
    for i in range(values.shape[0]):
        h = _P5 + np.uint64(8)
        h ^= _round(np.uint64(0), np.uint64(values[i]))
        h = _rotl(h, 27) * _P1 + _P4
        out[i] = _avalanche(h)
    return out


@cached_njit
def xxh64_u32(values):
    """XXH64 (seed 0) of each value's 4 little-endian bytes (INT32's PLAIN encoding)."""
    out = np.empty(values.shape[0], np.uint64)
    for i in range(values.shape[0]):
        h = _P5 + np.uint64(4)
        h ^= (np.uint64(values[i]) & _M32) * _P1
        h = _rotl(h, 23) * _P2 + _P3
        out[i] = _avalanche(h)
    return out


@cached_njit
def xxh64_binary(data, offsets):
    """XXH64 (seed 0) of data[offsets[i]:offsets[i + 1]] for each i (BYTE_ARRAY values)."""
    n_values = offsets.shape[0] - 1
    out = np.empty(n_values, np.uint64)
    for k in range(n_values):
        p = offsets[k]
        end = offsets[k + 1]
        n = end - p
        if n >= 32:
            v1 = _P1 + _P2
            v2 = _P2
            v3 = np.uint64(0)
            v4 = np.uint64(0) - _P1
            while p + 32 <= end:
                v1 = _round(v1, _le(data, p, 8))
                v2 = _round(v2, _le(data, p + 8, 8))
                v3 = _round(v3, _le(data, p + 16, 8))
                v4 = _round(v4, _le(data, p + 24, 8))
                p += 32
            h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
            h = (h ^ _round(np.uint64(0), v1)) * _P1 + _P4
            h = (h ^ _round(np.uint64(0), v2)) * _P1 + _P4
            h = (h ^ _round(np.uint64(0), v3)) * _P1 + _P4
            h = (h ^ _round(np.uint64(0), v4)) * _P1 + _P4
        else:
            h = _P5
        h += np.uint64(n)
        while p + 8 <= end:
            h ^= _round(np.uint64(0), _le(data, p, 8))
            h = _rotl(h, 27) * _P1 + _P4
            p += 8
        if p + 4 <= end:
            h ^= _le(data, p, 4) * _P1
            h = _rotl(h, 23) * _P2 + _P3
            p += 4
        while p < end:
            h ^= np.uint64(data[p]) * _P5
            h = _rotl(h, 11) * _P1
            p += 1
        out[k] = _avalanche(h)
    return out


def xxh64(data: bytes) -> int:
    """XXH64 (seed 0) of one byte string."""
    buf = np.frombuffer(data, np.uint8).copy() if data else np.zeros(0, np.uint8)
    return int(xxh64_binary(buf, np.array([0, len(data)], np.int64))[0])


# --- keys ---------------------------------------------------------------------------------

_INT_WIDTH = {"INT32": 4, "INT64": 8}


def hash_kind(column_type: pa.DataType, physical_type: str, keys_type: pa.DataType) -> str | None:
    """How keys must be hashed to probe a column's filter ("int32", "int64", "bytes"), or None
    when this module cannot tell a key's PLAIN bytes in that column (the filter is not used)."""
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    if pa.types.is_integer(column_type) and pa.types.is_integer(keys_type):
        width = _INT_WIDTH.get(physical_type)
        if width is None or column_type.bit_width > 8 * width:
            return None
        return "int32" if width == 4 else "int64"
    textual = (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)
               or pa.types.is_binary(column_type) or pa.types.is_large_binary(column_type))
    keys_textual = (pa.types.is_string(keys_type) or pa.types.is_large_string(keys_type)
                    or pa.types.is_binary(keys_type) or pa.types.is_large_binary(keys_type))
    if textual and keys_textual and physical_type == "BYTE_ARRAY":
        return "bytes"
    return None


def hash_keys(keys: pa.Array, kind: str) -> np.ndarray:
    """XXH64 of each key's PLAIN bytes in a column of `kind`, in the keys' order (uint64).

    An integer key is hashed by its two's-complement bytes at the column's width: for a value
    the column can hold, that is the value's PLAIN encoding (sign- or zero-extended to INT32
    for the narrow types alike); a key the column cannot hold gets a hash that can only add a
    false positive."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if kind in ("int32", "int64"):
        # copies (writable, contiguous): one compiled variant of the loops serves every call
        values = np.array(keys.to_numpy(zero_copy_only=False), np.int64).view(np.uint64)
        return xxh64_u64(values) if kind == "int64" else xxh64_u32(values)
    arr = keys.cast(pa.large_binary())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.array(np.frombuffer(off_buf, np.int64)[arr.offset:arr.offset + len(arr) + 1])
    data = np.array(np.frombuffer(data_buf, np.uint8)) if data_buf is not None \
        and data_buf.size else np.zeros(0, np.uint8)
    return xxh64_binary(data, offsets)


# --- the filter ---------------------------------------------------------------------------


# BloomFilterHeader fields 2-4: union {1: empty struct}, the only member the spec defines
# (SplitBlockAlgorithm BLOCK, XxHash XXHASH, Uncompressed UNCOMPRESSED)
_UNIONS = {2: "algorithm", 3: "hash", 4: "compression"}


def _only_member(buf: bytes, pos: int, what: str) -> int:
    """A union whose one member is field 1, an empty struct; anything else is refused."""
    fid, typ, pos = thrift.field(buf, pos, 0)
    if fid != 1 or typ != thrift.STRUCT:
        raise BloomError(f"unsupported bloom filter {what} (union member {fid}, type {typ})")
    fid, typ, pos = thrift.field(buf, pos, 0)
    if typ != 0:
        raise BloomError(f"bloom filter {what} carries fields this reader does not know")
    fid, typ, pos = thrift.field(buf, pos, 1)
    if typ != 0:
        raise BloomError(f"bloom filter {what} union has more than one member")
    return pos


def parse_header(buf: bytes | memoryview) -> tuple[int, int]:
    """(numBytes, header length) of a BloomFilterHeader at the start of buf. Refuses anything
    but BLOCK / XXHASH / UNCOMPRESSED, unknown fields, and sizes that are not whole blocks."""
    try:
        return _parse_header(buf)
    except thrift.CompactError as e:
        if isinstance(e, BloomError):
            raise
        raise BloomError(f"bloom filter header: {e}") from e


def _parse_header(buf: bytes | memoryview) -> tuple[int, int]:
    pos, last, num_bytes, seen = 0, 0, None, set()
    while True:
        fid, typ, pos = thrift.field(buf, pos, last)
        if typ == 0:
            break
        if fid in seen:
            raise BloomError(f"bloom filter header repeats field {fid}")
        seen.add(fid)
        last = fid
        if fid == 1 and typ == thrift.I32:
            raw, pos = thrift.varint(buf, pos, 5)
            num_bytes = thrift.zigzag(raw)
        elif fid in _UNIONS and typ == thrift.STRUCT:
            pos = _only_member(buf, pos, _UNIONS[fid])
        else:
            raise BloomError(f"bloom filter header has field {fid} of type {typ}, unknown here")
    if seen != {1, 2, 3, 4} or num_bytes is None:
        raise BloomError(f"bloom filter header lacks fields {sorted({1, 2, 3, 4} - seen)}")
    if num_bytes <= 0 or num_bytes % BLOCK_BYTES or num_bytes > MAX_FILTER_BYTES:
        raise BloomError(f"bloom filter of {num_bytes} bytes is not a whole number of blocks")
    return num_bytes, pos


def bitset_of(buf: bytes | memoryview, length: int | None) -> np.ndarray:
    """The filter's bitset as little-endian 32-bit words, from its header and data (`buf`
    holds at least the whole filter; `length` is the footer's bloom_filter_length, if any)."""
    num_bytes, start = parse_header(buf)
    end = start + num_bytes
    if length is not None and end != length:
        raise BloomError(f"bloom filter header and bitset take {end} bytes, the footer says "
                         f"{length}")
    if end > len(buf):
        raise BloomError("bloom filter bitset is cut short")
    words = np.frombuffer(buf, dtype="<u4", count=num_bytes // 4, offset=start)
    return words if words.flags.aligned else words.copy()


@cached_njit
def _check(words, hashes, stop_at_first):
    """Which hashes the filter may hold; with stop_at_first, only whether any (out[0])."""
    z = np.uint64(words.shape[0] // 8)
    out = np.zeros(1 if stop_at_first else hashes.shape[0], np.bool_)
    for k in range(hashes.shape[0]):
        h = hashes[k]
        base = ((h >> np.uint64(32)) * z) >> np.uint64(32)
        x = h & _M32
        hit = True
        for i in range(8):
            bit = ((x * SALT[i]) & _M32) >> np.uint64(27)
            if not (np.uint64(words[base * np.uint64(8) + np.uint64(i)]) >> bit) & np.uint64(1):
                hit = False
                break
        if hit:
            if stop_at_first:
                out[0] = True
                return out
            out[k] = True
    return out


def may_contain(words: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Per hash: may the filter hold it (False is certain, True may be a false positive)."""
    if not len(words):
        raise BloomError("empty bloom filter")
    return _check(words, np.ascontiguousarray(hashes, np.uint64), False)


def may_contain_any(words: np.ndarray, hashes: np.ndarray) -> bool:
    """May the filter hold any of the hashes (stops at the first that it may)."""
    if not len(words):
        raise BloomError("empty bloom filter")
    if not len(hashes):
        return False
    return bool(_check(words, np.ascontiguousarray(hashes, np.uint64), True)[0])


# --- reading filters out of a file --------------------------------------------------------


def coalesce(spans: list[tuple[int, int]], gap: int = 8192) -> list[tuple[int, int, list[int]]]:
    """Merge (offset, length) spans into reads: (offset, length, indexes of the spans it
    covers). Neighbours closer than `gap`, or than the span being added, share one read, so
    a read is at most about twice the bytes it needs."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    reads: list[tuple[int, int, list[int]]] = []
    for i in order:
        off, n = spans[i]
        if reads:
            r_off, r_len, members = reads[-1]
            if off - (r_off + r_len) <= max(gap, n):
                reads[-1] = (r_off, max(r_len, off + n - r_off), [*members, i])
                continue
        reads.append((off, n, [i]))
    return reads


class FilterReader:
    """Reads the bloom filters of one file: spans that lie close together in one pread each.
    `bytes_read` counts every byte read (gaps between filters included)."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = path
        self.bytes_read = 0

    def read(self, spans: list[tuple[int, int | None]]) -> list[np.ndarray | None]:
        """The bitset of each (bloom_filter_offset, bloom_filter_length or None) span, or None
        for one this module refuses (corrupt, unsupported, outside the file)."""
        out: list[np.ndarray | None] = [None] * len(spans)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            known = [(i, off, n) for i, (off, n) in enumerate(spans)
                     if n is not None and off >= 0 and n > 0 and off + n <= size]
            for r_off, r_len, members in coalesce([(off, n) for _, off, n in known]):
                buf = memoryview(os.pread(fd, r_len, r_off))  # slices without copies
                self.bytes_read += len(buf)
                for m in members:
                    i, off, n = known[m]
                    out[i] = _bitset_or_none(buf[off - r_off:off - r_off + n], n)
            for i, (off, n) in enumerate(spans):
                if n is None and 0 <= off < size:  # an older footer: header first, then the rest
                    out[i] = self._read_unsized(fd, off, size)
        finally:
            os.close(fd)
        return out

    def _read_unsized(self, fd: int, off: int, size: int) -> np.ndarray | None:
        head = os.pread(fd, min(HEADER_PROBE, size - off), off)
        self.bytes_read += len(head)
        try:
            num_bytes, start = parse_header(head)
        except BloomError:
            return None
        if off + start + num_bytes > size:
            return None
        rest = os.pread(fd, start + num_bytes - len(head), off + len(head)) \
            if start + num_bytes > len(head) else b""
        self.bytes_read += len(rest)
        return _bitset_or_none(head + rest, None)


def _bitset_or_none(buf: bytes | memoryview, length: int | None) -> np.ndarray | None:
    try:
        return bitset_of(buf, length)
    except BloomError:
        return None


def warm_up() -> None:
    """Compile (or load from numba's cache) the hashing and probing loops."""
    h = xxh64_u64(np.array([1], np.uint64))
    xxh64_u32(np.array([1], np.uint64))
    xxh64_binary(np.zeros(1, np.uint8), np.array([0, 1], np.int64))
    # filters come read-only (views of the bytes read) or, when unaligned, copied
    for words in (np.frombuffer(bytes(32), "<u4"), np.zeros(8, np.uint32)):
        _check(words, h, True)
        _check(words, h, False)
