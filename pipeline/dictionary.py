"""Dictionary-encoded columns keep values no row uses.

Arrow's filter and take keep a dictionary array's dictionary whole, and the Parquet writer writes
the dictionary it is given: a file rewritten from filtered rows would still hold, in its
dictionary page, a value only erased rows used (an erased customer's email, in a lake whose
email column is dictionary-typed). Nothing reads it back as a row, yet its bytes are in the file.
So the shared writer drops such entries (`without_unused_entries`), and the audit searches them
(`unused_entries`) as physically present.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

_NO_NULLS = np.zeros(0, np.uint8)


@nb.njit(nogil=True, cache=True)
def _mark_used(indices, valid, offset, n, used):
    """Mark the entries rows offset..offset+n use; stop once every entry is (a small
    dictionary is usually complete within a few hundred rows, so most calls read only those)."""
    left = used.shape[0]
    for i in range(n):
        j = i + offset
        if valid.shape[0] and not (valid[j >> 3] >> (j & 7)) & 1:
            continue
        e = indices[j]
        if 0 <= e < used.shape[0] and not used[e]:
            used[e] = True
            left -= 1
            if left == 0:
                break


def entries_used(arr: pa.DictionaryArray) -> np.ndarray:
    """Which dictionary entries a row uses (bool, one per entry)."""
    used = np.zeros(len(arr.dictionary), dtype=bool)
    idx = arr.indices
    bufs = idx.buffers()
    kind = "u" if pa.types.is_unsigned_integer(idx.type) else "i"
    values = np.frombuffer(bufs[1], np.dtype(f"{kind}{idx.type.bit_width // 8}"))
    valid = np.frombuffer(bufs[0], np.uint8) if idx.null_count else _NO_NULLS
    _mark_used(values, valid, idx.offset, len(idx), used)
    return used


def unused_entries(arr: pa.Array) -> pa.Array | None:
    """The dictionary entries of `arr` no row uses (None: not a dictionary, or none unused)."""
    if not pa.types.is_dictionary(arr.type) or not len(arr.dictionary):
        return None
    used = entries_used(arr)
    return None if used.all() else arr.dictionary.filter(pa.array(~used))


def without_unused_entries(arr: pa.Array) -> pa.Array:
    """`arr` with only the dictionary entries its rows use (renumbered, in the same order);
    any other array as it is."""
    if not pa.types.is_dictionary(arr.type) or not len(arr.dictionary):
        return arr
    used = entries_used(arr)
    if used.all():
        return arr
    remap = (np.cumsum(used) - 1).astype(arr.indices.type.to_pandas_dtype())
    idx = arr.indices
    values = idx.fill_null(0).to_numpy(zero_copy_only=False) if idx.null_count else \
        idx.to_numpy(zero_copy_only=False)
    mask = idx.is_null().to_numpy(zero_copy_only=False) if idx.null_count else None
    indices = pa.array(remap[values], idx.type, mask=mask)
    return pa.DictionaryArray.from_arrays(indices, arr.dictionary.filter(pa.array(used)),
                                          ordered=arr.type.ordered)


def table_without_unused_entries(data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """Every dictionary column of `data` (chunk by chunk) without its unused entries."""
    if not any(pa.types.is_dictionary(f.type) for f in data.schema):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays([without_unused_entries(c) for c in data.columns],
                                          schema=data.schema)
    cols = [pa.chunked_array([without_unused_entries(c) for c in col.chunks], col.type)
            if pa.types.is_dictionary(col.type) else col for col in data.columns]
    return pa.Table.from_arrays(cols, schema=data.schema)


def warm_up() -> None:
    """Compile (or load from numba's cache) the loop outside a timed region."""
    entries_used(pa.array(["a"]).dictionary_encode())
