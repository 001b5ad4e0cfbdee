"""Order-insensitive checksum of rows, computed on Arrow buffers in compiled loops (numba).

The checksum of a set of rows is the sum, mod 2^64, of a 64-bit hash of each row, so it adds
up across row groups, files and engines whatever order rows come in. A row's hash folds in its
columns' value hashes in schema order; a value hashes by what it is, not how Arrow stores it:

- integers, dates and timestamps by their value sign-extended to 64 bits (an int32 and an int64
  holding 7 hash alike; a timestamp's unit and time zone are not part of it);
- floats by their bits (float32 and float64 differ);
- strings and binaries by their bytes (plain, large, view or dictionary-encoded alike);
- booleans as the integers 0 and 1;
- null by a fold of its own (not a value's hash: no value can stand in for null);
- any other type (decimal, nested, …) through Polars' hash of that column.

Why not Polars' `hash_rows` on the whole table (the method before): converting Arrow strings
and binaries to Polars' views copies every payload, which cost as much as the hashing itself;
here the loops read the Arrow buffers in place and release the GIL, so the scrub's worker
threads hash in parallel. `METHOD` names the function in receipts: a checksum compares only
with one taken by the same method.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from pipeline.kernels import cached_njit

METHOD = "voicescrub-rowhash-1"

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x27D4EB2F165667C5)
_NULL = np.uint64(0x6A09E667F3BCC909)
_MASK64 = (1 << 64) - 1
_NO_NULLS = np.zeros(0, np.uint8)


@intrinsic
def _load_u64(typingctx, data, pos):  # noqa: ARG001 (numba's intrinsic signature)
    """8 bytes of a uint8 array at any byte position, as one (unaligned) little-endian load."""
    sig = types.uint64(data, types.intp)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return sig, codegen


@nb.njit(inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@nb.njit(inline="always")
def _fmix(h):
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


@nb.njit(inline="always")
def _load_u32(data, pos):
    return np.uint64(data[pos]) | (np.uint64(data[pos + 1]) << np.uint64(8)) | \
        (np.uint64(data[pos + 2]) << np.uint64(16)) | (np.uint64(data[pos + 3]) << np.uint64(24))


@nb.njit(inline="always")
def _bytes_hash(data, start, end):
    """A 64-bit hash of data[start:end]. Short values (most strings) take a fixed path per
    size class, reading overlapping words from both ends, so variable lengths do not cost a
    branch misprediction per word; long ones (payloads) run four independent lanes over
    32-byte strides, so they are not bound by one chain of multiplies."""
    n = end - start
    seed = np.uint64(n) * _P3 + _P4  # never 0, so the empty value does not hash to 0
    if n <= 16:
        if n >= 8:
            w0 = _load_u64(data, start)
            w1 = _load_u64(data, end - 8)
        elif n >= 4:
            w0 = _load_u32(data, start)
            w1 = _load_u32(data, end - 4)
        elif n > 0:
            w0 = np.uint64(data[start]) | (np.uint64(data[start + (n >> 1)]) << np.uint64(8)) \
                | (np.uint64(data[end - 1]) << np.uint64(16))
            w1 = np.uint64(0)
        else:
            w0 = np.uint64(0)
            w1 = np.uint64(0)
        return _fmix(_rotl((w0 ^ seed) * _P1, 31) ^ ((w1 + seed) * _P2))
    if n <= 32:
        a = _rotl((_load_u64(data, start) ^ seed) * _P1, 31) ^ (_load_u64(data, start + 8) * _P2)
        b = _rotl((_load_u64(data, end - 16) + seed) * _P2, 29) ^ (_load_u64(data, end - 8) * _P4)
        return _fmix(a + _rotl(b, 17))
    a = seed
    b = _P2
    c = _P3
    d = _P4
    i = start
    while i + 32 < end:
        a = _rotl(a + _load_u64(data, i) * _P2, 31) * _P1
        b = _rotl(b + _load_u64(data, i + 8) * _P2, 31) * _P1
        c = _rotl(c + _load_u64(data, i + 16) * _P2, 31) * _P1
        d = _rotl(d + _load_u64(data, i + 24) * _P2, 31) * _P1
        i += 32
    # the last 32 bytes, overlapping the last stride: no word or byte loop
    i = end - 32
    a = _rotl(a + _load_u64(data, i) * _P2, 31) * _P1
    b = _rotl(b + _load_u64(data, i + 8) * _P2, 31) * _P1
    c = _rotl(c + _load_u64(data, i + 16) * _P2, 31) * _P1
    d = _rotl(d + _load_u64(data, i + 24) * _P2, 31) * _P1
    return _fmix(_rotl(a, 1) + _rotl(b, 7) + _rotl(c, 12) + _rotl(d, 18))


@nb.njit(inline="always")
def _is_null(valid, j):
    return valid.shape[0] != 0 and not (valid[j >> 3] >> (j & 7)) & 1


@nb.njit(inline="always")
def _fold(acc, v):
    return _rotl(acc ^ v, 29) * _P1


@nb.njit(inline="always")
def _fold_null(acc):
    """A null's fold is not a value's fold: a value v folding like a null would need
    rotl(acc ^ v) * P1 == (rotl(acc) ^ NULL) * P3, which holds for one accumulator at a time,
    never for every row (with one constant hash for null, exactly one integer collided)."""
    return (_rotl(acc, 29) ^ _NULL) * _P3


@cached_njit
def _fold_bytes(acc, offsets, data, valid, offset):
    for i in range(acc.shape[0]):
        j = i + offset
        if _is_null(valid, j):
            acc[i] = _fold_null(acc[i])
        else:
            acc[i] = _fold(acc[i], _bytes_hash(data, np.intp(offsets[j]), np.intp(offsets[j + 1])))


@cached_njit
def _fold_ints(acc, values, valid, offset):
    for i in range(acc.shape[0]):
        j = i + offset
        if _is_null(valid, j):
            acc[i] = _fold_null(acc[i])
        else:
            acc[i] = _fold(acc[i], np.uint64(np.int64(values[j])) * _P2)


@cached_njit
def _fold_hashes(acc, indices, hashes, valid, offset, entry_null):
    """Dictionary-encoded values: the dictionary's hashes, gathered by index (a null entry of
    the dictionary folds like a null row)."""
    for i in range(acc.shape[0]):
        j = i + offset
        if _is_null(valid, j):
            acc[i] = _fold_null(acc[i])
            continue
        k = indices[j]
        if entry_null.shape[0] != 0 and entry_null[k]:
            acc[i] = _fold_null(acc[i])
        else:
            acc[i] = _fold(acc[i], hashes[k])


@cached_njit
def _hash_bytes_each(offsets, data, offset, n):
    out = np.empty(n, np.uint64)
    for i in range(n):
        j = i + offset
        out[i] = _bytes_hash(data, np.intp(offsets[j]), np.intp(offsets[j + 1]))
    return out


@cached_njit
def _finish(acc):
    total = np.uint64(0)
    for i in range(acc.shape[0]):
        total += _fmix(acc[i])
    return total


_INT_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}
_UINT_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def _int_dtype(t: pa.DataType) -> type:
    return (_UINT_DTYPES if pa.types.is_unsigned_integer(t) else _INT_DTYPES)[t.bit_width]


def _buffer(buf: pa.Buffer | None, dtype=np.uint8) -> np.ndarray:  # noqa: ANN001
    return np.frombuffer(buf, dtype) if buf is not None else np.zeros(0, dtype)


def _normalize(arr: pa.Array) -> pa.Array:
    """Representations that hash alike become one: views to large, non-string dictionaries to
    their values, booleans to bytes, extension types to their storage; the types Polars cannot
    hash to their text."""
    if isinstance(arr, pa.ExtensionArray):  # (uuid, json, …) hash as their storage
        return _normalize(arr.storage)
    t = arr.type
    if pa.types.is_run_end_encoded(t):
        return _normalize(pc.run_end_decode(arr))
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        # rebuilt, not cast: pyarrow 26's cast leaves non-monotonic offsets after a null
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        return _normalize(pa.LargeListArray.from_arrays(pa.array(offsets), pc.list_flatten(arr),
                                                        mask=arr.is_null()))
    if pa.types.is_decimal256(t):  # Polars cannot take it
        return arr.cast(pa.large_string())
    if pa.types.is_interval(t):  # (months, days, nanoseconds): its 16 bytes
        return pa.Array.from_buffers(pa.binary(16), len(arr), arr.buffers(), arr.null_count,
                                     arr.offset)
    if pa.types.is_dictionary(t) and not _is_bytes(t.value_type):
        return _normalize(arr.cast(t.value_type))
    if pa.types.is_string_view(t):
        return arr.cast(pa.large_string())
    if pa.types.is_binary_view(t):
        return arr.cast(pa.large_binary())
    if pa.types.is_boolean(t):
        return arr.cast(pa.uint8())
    return arr


def _is_bytes(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t)
            or pa.types.is_large_binary(t))


def _needs_normalizing(t: pa.DataType) -> bool:
    """Whether _normalize changes an array of this type (the same tests, by type alone)."""
    return (isinstance(t, pa.BaseExtensionType) or pa.types.is_run_end_encoded(t)
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)
            or pa.types.is_decimal256(t) or pa.types.is_interval(t)
            or (pa.types.is_dictionary(t) and not _is_bytes(t.value_type))
            or pa.types.is_string_view(t) or pa.types.is_binary_view(t)
            or pa.types.is_boolean(t))


def _offset_dtype(t: pa.DataType) -> type:
    return np.int64 if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else np.int32


def _classify(t: pa.DataType) -> tuple:
    """How a column of type t folds: (kind, dtypes of its buffers)."""
    if _needs_normalizing(t):
        return ("normalize",)
    if pa.types.is_dictionary(t):
        return ("dictionary", _int_dtype(t.index_type), _offset_dtype(t.value_type))
    if _is_bytes(t):
        return ("bytes", _offset_dtype(t))
    if (pa.types.is_integer(t) or pa.types.is_temporal(t)) and t.bit_width in _INT_DTYPES:
        return ("ints", _int_dtype(t) if pa.types.is_integer(t) else _INT_DTYPES[t.bit_width])
    if pa.types.is_floating(t) and t.bit_width in (32, 64):
        return ("ints", _INT_DTYPES[t.bit_width])
    return ("polars",)


# A column's kind, decided once per type: the type tests cost more than hashing a small row
# group's column did (a scrub folds some 20,000 columns).
_KINDS: dict[pa.DataType, tuple] = {}


def _kind(t: pa.DataType) -> tuple:
    if isinstance(t, pa.BaseExtensionType):  # a Python-defined one may not be hashable
        return ("normalize",)
    kind = _KINDS.get(t)
    if kind is None:
        kind = _KINDS[t] = _classify(t)
    return kind


def _fold_array(acc: np.ndarray, arr: pa.Array) -> None:
    """Fold one column's value hashes into the rows' accumulators (acc has len(arr) rows)."""
    kind = _kind(arr.type)
    if kind[0] == "normalize":
        arr = _normalize(arr)
        kind = _kind(arr.type)
    offset = arr.offset
    if kind[0] == "polars":  # decimals, nested, …: Polars hashes the column (nulls included)
        try:
            hashes = pl.from_arrow(pa.table({"v": arr})).hash_rows(seed=0).to_numpy()
        except Exception as e:
            raise TypeError(f"the row checksum cannot hash a column of type {arr.type}: "
                            f"{e}") from e
        _fold_hashes(acc, np.arange(len(arr), dtype=np.int64), hashes, _NO_NULLS, 0, _NO_NULLS)
        return
    bufs = arr.buffers()
    valid = _buffer(bufs[0]) if arr.null_count else _NO_NULLS
    if kind[0] == "dictionary":
        d = arr.dictionary
        dbufs = d.buffers()
        hashes = _hash_bytes_each(_buffer(dbufs[1], kind[2]), _buffer(dbufs[2]), d.offset, len(d))
        entry_null = (d.is_null().to_numpy(zero_copy_only=False).view(np.uint8) if d.null_count
                      else _NO_NULLS)
        _fold_hashes(acc, _buffer(bufs[1], kind[1]), hashes, valid, offset, entry_null)
    elif kind[0] == "bytes":
        _fold_bytes(acc, _buffer(bufs[1], kind[1]), _buffer(bufs[2]), valid, offset)
    else:
        _fold_ints(acc, _buffer(bufs[1], kind[1]), valid, offset)


def row_hashes(data: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The 64-bit hash of each row (before the final mix), as a uint64 array."""
    acc = np.full(data.num_rows, np.uint64(data.num_columns), np.uint64)
    for column in data.columns:
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        pos = 0
        for chunk in chunks:
            if len(chunk):
                _fold_array(acc[pos:pos + len(chunk)], chunk)
            pos += len(chunk)
    return acc


def row_checksum(data: pa.Table | pa.RecordBatch) -> int:
    """Order-insensitive checksum of rows: the sum of per-row hashes, mod 2^64."""
    if data.num_rows == 0:
        return 0
    return int(_finish(row_hashes(data))) & _MASK64


def warm_up() -> None:
    """Compile (or load from numba's cache) the loops for the common column types, so that a
    timed run does not pay for it: the first call in a fresh install compiles for ~3 s."""
    row_checksum(pa.table({
        "i8": pa.array([1], pa.int8()), "i16": pa.array([1], pa.int16()),
        "i32": pa.array([1], pa.int32()), "i64": pa.array([1], pa.int64()),
        "f32": pa.array([1.0], pa.float32()), "f64": pa.array([1.0], pa.float64()),
        "s": pa.array(["a"]), "ls": pa.array(["a"], pa.large_string()),
        "d": pa.array(["a"]).dictionary_encode()}))
