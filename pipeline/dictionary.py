"""Dictionary-encoded columns keep values no row uses.

Arrow's filter and take keep a dictionary array's dictionary whole, and the Parquet writer writes
the dictionary it is given: a file rewritten from filtered rows would still hold, in its
dictionary page, a value only erased rows used (an erased customer's email, in a lake whose
email column is dictionary-typed). Nothing reads it back as a row, yet its bytes are in the file.
So the shared writer drops such entries (`without_unused_entries`), and the audit searches them
(`unused_entries`) as physically present. A dictionary inside a list, struct or map is written
whole as well (tested), and is rebuilt from its rows' values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.kernels import cached_njit

_NO_NULLS = np.zeros(0, np.uint8)


@cached_njit
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


_PLAIN = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def entries(dictionary: pa.Array, keep: np.ndarray) -> pa.Array:
    """The entries where keep holds, in order, of the dictionary's own type (Arrow 26 cannot
    filter views: they go through their plain type and back)."""
    plain = _PLAIN.get(dictionary.type)
    if plain is None:
        return dictionary.filter(pa.array(keep))
    return dictionary.cast(plain).filter(pa.array(keep)).cast(dictionary.type)


def unused_entries(arr: pa.Array) -> pa.Array | None:
    """The dictionary entries of `arr` no row uses (None: not a dictionary, or none unused)."""
    if not pa.types.is_dictionary(arr.type) or not len(arr.dictionary):
        return None
    used = entries_used(arr)
    return None if used.all() else entries(arr.dictionary, ~used)


def has_dictionary(t: pa.DataType) -> bool:
    """Whether `t` is a dictionary type or holds one (in a list, struct or map)."""
    return pa.types.is_dictionary(t) or any(has_dictionary(c) for c in child_types(t))


def child_types(t: pa.DataType) -> list[pa.DataType]:
    """The types a struct, map or list kind holds (none for any other type)."""
    if pa.types.is_struct(t):
        return [f.type for f in t]
    if pa.types.is_map(t):
        return [t.key_type, t.item_type]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return [t.value_type]
    return []


def _plain(t: pa.DataType) -> pa.DataType:
    """`t` with every dictionary in it replaced by its value type."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_plain(t.key_type)),
                       t.item_field.with_type(_plain(t.item_type)), t.keys_sorted)
    for is_kind, make in ((pa.types.is_list, pa.list_), (pa.types.is_large_list, pa.large_list),
                          (pa.types.is_list_view, pa.list_view),
                          (pa.types.is_large_list_view, pa.large_list_view)):
        if is_kind(t):
            return make(t.value_field.with_type(_plain(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_plain(t.value_type)), t.list_size)
    return t


def without_unused_entries(arr: pa.Array) -> pa.Array:
    """`arr` with only the dictionary entries its rows use (renumbered, in the same order);
    in a list or struct, each dictionary it holds likewise (the Parquet writer writes a
    nested dictionary whole too); any other array as it is. Unchanged (the same object)
    when every entry is used."""
    if not pa.types.is_dictionary(arr.type):
        return _nested_without_unused_entries(arr) if has_dictionary(arr.type) else arr
    if not len(arr.dictionary):
        return arr
    used = entries_used(arr)
    if used.all():
        return arr
    return _renumbered(arr, used, entries(arr.dictionary, used))


def _nested_without_unused_entries(arr: pa.Array) -> pa.Array:
    """A list's values or a struct's fields pruned in place (entries keep their order), the
    array rebuilt around them only if one changed. Other kinds (maps, fixed-size lists,
    list views: rare in Parquet) are decoded and encoded again."""
    t = arr.type
    if pa.types.is_struct(t):
        fields = [arr.field(i) for i in range(t.num_fields)]  # (sliced as `arr` is)
        pruned = [without_unused_entries(f) for f in fields]
        if all(p is f for p, f in zip(pruned, fields, strict=True)):
            return arr
        return pa.StructArray.from_arrays(pruned, fields=list(t), mask=_validity(arr))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy()  # (the slice's, into the whole values array)
        values = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
        pruned = without_unused_entries(values)
        if pruned is values:
            return arr
        large = pa.types.is_large_list(t)
        cls = pa.LargeListArray if large else pa.ListArray
        return cls.from_arrays(pa.array(offsets - offsets[0], pa.int64() if large else
                                        pa.int32()), pruned, type=t, mask=_validity(arr))
    return arr.cast(_plain(t)).cast(t)


def _validity(arr: pa.Array) -> pa.Array | None:
    """The nulls of `arr` as a mask for from_arrays (None: there are none)."""
    return arr.is_null() if arr.null_count else None


def _renumbered(arr: pa.DictionaryArray, used: np.ndarray, kept: pa.Array) -> pa.Array:
    """arr's rows over the dictionary `kept` (its entries where `used` holds)."""
    remap = (np.cumsum(used) - 1).astype(arr.indices.type.to_pandas_dtype())
    idx = arr.indices
    values = idx.fill_null(0).to_numpy(zero_copy_only=False) if idx.null_count else \
        idx.to_numpy(zero_copy_only=False)
    mask = idx.is_null().to_numpy(zero_copy_only=False) if idx.null_count else None
    return pa.DictionaryArray.from_arrays(pa.array(remap[values], idx.type, mask=mask), kept,
                                          ordered=arr.type.ordered)


def _column_without_unused_entries(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Chunks that share one dictionary keep sharing one (the Parquet writer keeps writing
    dictionary pages only while the dictionary stays the same); others are pruned alone."""
    chunks = [c for c in col.chunks if len(c.dictionary)]
    if len(chunks) > 1 and all(c.dictionary.equals(chunks[0].dictionary) for c in chunks):
        used = np.zeros(len(chunks[0].dictionary), dtype=bool)
        for c in chunks:
            used |= entries_used(c)
        if used.all():
            return col
        kept = entries(chunks[0].dictionary, used)
        return pa.chunked_array([_renumbered(c, used, kept) if len(c.dictionary) else c
                                 for c in col.chunks], col.type)
    return pa.chunked_array([without_unused_entries(c) for c in col.chunks], col.type)


def table_without_unused_entries(data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """Every dictionary column of `data` (nested ones too) without the entries no row
    uses."""
    if not any(has_dictionary(f.type) for f in data.schema):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays([without_unused_entries(c) for c in data.columns],
                                          schema=data.schema)
    cols = [_column_without_unused_entries(col) if pa.types.is_dictionary(col.type) else
            pa.chunked_array([without_unused_entries(c) for c in col.chunks], col.type)
            if has_dictionary(col.type) else col for col in data.columns]
    return pa.Table.from_arrays(cols, schema=data.schema)


def warm_up() -> None:
    """Compile (or load from numba's cache) the loop outside a timed region, for the index
    types Arrow (int32), Polars (uint32) and small dictionaries use."""
    for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint32()):
        entries_used(pa.DictionaryArray.from_arrays(pa.array([0], t), pa.array(["a"])))
