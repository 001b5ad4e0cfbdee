"""Dictionary entries no row uses: found, and dropped without changing a value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dictionary import (
    entries_used,
    table_without_unused_entries,
    unused_entries,
    without_unused_entries,
)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 40), rows=st.lists(st.one_of(st.none(), st.integers(0, 39)),
                                              max_size=120),
       cut=st.tuples(st.integers(0, 120), st.integers(0, 120)),
       index_type=st.sampled_from([pa.int8(), pa.int16(), pa.int32(), pa.int64(),
                                   pa.uint8(), pa.uint32()]),
       views=st.booleans())
def test_unused_entries_are_dropped_and_nothing_else(size: int, rows: list[int | None],
                                                     cut: tuple[int, int],
                                                     index_type: pa.DataType,
                                                     views: bool) -> None:
    idx = [None if r is None else r % size for r in rows]
    values = pa.array([f"v{i}" for i in range(size)], pa.string_view() if views else None)
    arr = pa.DictionaryArray.from_arrays(pa.array(idx, index_type), values)
    start = min(cut[0], len(arr))
    arr = arr.slice(start, cut[1])  # an offset into shared buffers, as a filter's slices are
    want = np.zeros(size, bool)
    want[[i for i in idx[start:start + cut[1]] if i is not None]] = True
    assert (entries_used(arr) == want).all()
    pruned = without_unused_entries(arr)
    assert pruned.to_pylist() == arr.to_pylist()
    assert pruned.type == arr.type
    assert len(pruned.dictionary) == int(want.sum())
    unused = unused_entries(arr)
    assert (unused.to_pylist() if unused is not None else []) == \
        [f"v{i}" for i in range(size) if not want[i]]


def test_a_table_keeps_its_schema_and_values() -> None:
    d = pa.array(["a", "secret", "b"]).dictionary_encode().filter(pa.array([True, False, True]))
    t = pa.table({"k": pa.chunked_array([d, d]), "n": [1, 2, 3, 4]})
    out = table_without_unused_entries(t)
    assert out.schema == t.schema and out.to_pylist() == t.to_pylist()
    assert all(c.dictionary.to_pylist() == ["a", "b"] for c in out["k"].chunks)
    batch = t.to_batches()[0]
    assert table_without_unused_entries(batch).column(0).dictionary.to_pylist() == ["a", "b"]


def test_chunks_sharing_a_dictionary_keep_sharing_one(tmp_path: Path) -> None:
    """Pruned together, so the Parquet writer keeps writing dictionary pages (a dictionary
    that changes between chunks makes it fall back to PLAIN for the rest of the row group)."""

    # the first half uses cities 0-24, the second 25-49: pruned apart, their dictionaries differ
    whole = pa.array([f"city{i % 25 + 25 * (i >= 1000)}" for i in range(2000)] + ["secret"]
                     ).dictionary_encode()
    kept = whole.slice(0, 2000)  # what a filter leaves: the dictionary still holds "secret"
    col = pa.chunked_array([kept.slice(0, 1000), kept.slice(1000)])
    out = table_without_unused_entries(pa.table({"c": col}))
    a, b = out["c"].chunks
    assert a.dictionary.equals(b.dictionary) and "secret" not in a.dictionary.to_pylist()
    assert out["c"].to_pylist() == col.to_pylist()
    apart = pa.table({"c": pa.chunked_array([without_unused_entries(c) for c in col.chunks])})

    def size(t: pa.Table) -> int:
        pq.write_table(t, tmp_path / "t.parquet", use_dictionary=["c"], compression="none")
        assert b"secret" not in (tmp_path / "t.parquet").read_bytes()
        return pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0).column(0) \
            .total_uncompressed_size

    assert size(out) * 2 < size(apart)  # dictionary pages throughout, not PLAIN


def test_dictionaries_in_lists_and_structs_are_pruned_in_place() -> None:
    """Entries keep their order (an ordered dictionary keeps its meaning), a slice counts
    only its own rows, and an array whose entries are all used comes back as it is."""
    ordered = pa.DictionaryArray.from_arrays(pa.array([2, 0, 1, 0], pa.int8()),
                                             pa.array(["low", "mid", "high"]), ordered=True)
    lists = pa.ListArray.from_arrays(pa.array([0, 1, 2, 2, 4], pa.int32()), ordered,
                                     mask=pa.array([False, False, True, False]))
    kept = lists.filter(pa.array([True, True, True, False]))  # "mid" and the last "low" go
    pruned = without_unused_entries(kept)
    assert pruned.to_pylist() == kept.to_pylist() and pruned.type == kept.type
    assert pruned.values.dictionary.to_pylist() == ["low", "high"]
    assert without_unused_entries(pruned) is pruned
    tail = lists.slice(3)
    assert without_unused_entries(tail).values.dictionary.to_pylist() == ["low", "mid"]
    struct = pa.StructArray.from_arrays([ordered, pa.array([1, 2, 3, 4])], names=["e", "n"])
    one = struct.filter(pa.array([False, True, False, False]))
    assert without_unused_entries(one).field(0).dictionary.to_pylist() == ["low"]
    assert without_unused_entries(one).to_pylist() == [{"e": "low", "n": 2}]
    table = pa.table({"l": kept, "s": struct.slice(1)})
    assert table_without_unused_entries(table)["l"].chunk(0).values.dictionary.to_pylist() \
        == ["low", "high"]
