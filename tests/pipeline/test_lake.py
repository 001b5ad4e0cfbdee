"""A lake on disk as a scrub sees it: here, how a file of a lake without a manifest is
rewritten (its writer settings read off its footer)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from generators.writer import open_writer
from pipeline.lake import settings_from_metadata


def _chunks(path: Path) -> dict[str, tuple[str, bool]]:
    """Column path -> (codec, dictionary-encoded)."""
    rg = pq.ParquetFile(path).metadata.row_group(0)
    return {rg.column(i).path_in_schema: (rg.column(i).compression,
                                          any("DICTIONARY" in e for e in rg.column(i).encodings))
            for i in range(rg.num_columns)}


def test_every_leaf_keeps_its_codec_and_dictionary_encoding(tmp_path: Path) -> None:
    """Nested leaves too: named by their top-level column, they were rewritten plain and
    uncompressed (pyarrow applies such a name to no leaf of a list or struct)."""
    src, dst = tmp_path / "src.parquet", tmp_path / "dst.parquet"
    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "aliases": pa.array([["a"], ["b", "c"], []]),
        "contact": pa.array([{"email": "a@x.io", "n": 1}] * 3),
        "note": pa.array(["x", "y", "x"])})
    pq.write_table(table, src, compression={
        "id": "SNAPPY", "aliases.list.element": "ZSTD", "contact.email": "GZIP",
        "contact.n": "NONE", "note": "ZSTD"}, use_dictionary=["aliases.list.element", "note"])
    settings = settings_from_metadata(pq.ParquetFile(src).metadata, src)
    writer = open_writer(dst, pq.read_schema(src), settings)
    writer.write_table(pq.read_table(src))
    writer.close()
    assert _chunks(dst) == _chunks(src)
    assert _chunks(src)["aliases.list.element"] == ("ZSTD", True)  # (what the test sets up)
