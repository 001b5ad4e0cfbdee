"""`voicescrub convert`: a generated Parquet lake loaded into one table format, in a root of
its own. Every table, every row (replicas included, told apart by `origin` as in the source's
paths), partitioned by region (and origin), with the source's compression and row-group size and
files of about the source's size. Streams one source file at a time: memory stays bounded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from generators.lake import (
    MANIFEST,
    UNFINISHED,
    check_output,
    mark_unfinished,
    output_or_nothing,
)
from pipeline.formats import get
from pipeline.formats.base import FORMAT_VERSION, FormatLake
from pipeline.lake import Lake, LakeError

PARTITION_TYPES = {"region": pa.string(), "origin": pa.string(), "date": pa.date32(),
                   "bucket": pa.int32()}
PARTITION_BY = ("region", "origin")  # the rest of a source path (date, bucket) is a column
BATCH_ROWS = 65536

Progress = Callable[[str, int, int], None]


class ConvertError(ValueError):
    """Bad conversion arguments: reported before anything is written."""


def _plain(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def table_schema(lake: Lake, table: str) -> tuple[pa.Schema, list[str]]:
    """The format table's schema (file columns, then path columns) and its partition columns."""
    files = lake.files(table)
    if not files:
        raise ConvertError(f"table {table!r} has no file to convert")
    file_schema = pq.read_schema(lake.root / files[0].path)
    fields = [pa.field(f.name, _plain(f.type), f.nullable) for f in file_schema]
    path_keys = [k for k in files[0].partition if k not in file_schema.names]
    fields += [pa.field(k, PARTITION_TYPES.get(k, pa.string())) for k in path_keys]
    return pa.schema(fields), [k for k in path_keys if k in PARTITION_BY]


def table_batches(lake: Lake, table: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Every row of every file of the table, with its path's partition values as columns."""
    zeros = pa.array(np.zeros(BATCH_ROWS, np.int32))
    for f in lake.files(table):
        pf = pq.ParquetFile(lake.root / f.path)
        # a path column is one value repeated: built once per file, sliced per batch
        consts = {field.name: pa.array([f.partition[field.name]]).cast(field.type).take(zeros)
                  for field in schema if field.name in f.partition}
        for b in pf.iter_batches(batch_size=BATCH_ROWS):
            cols = [consts[field.name].slice(0, b.num_rows) if field.name in consts
                    else b.column(field.name).cast(field.type) for field in schema]
            yield pa.RecordBatch.from_arrays(cols, schema=schema)


def format_writer(lake: Lake, table: str) -> dict:
    """The source's writer settings, with file-size targets that give files of about the
    source's largest file."""
    src = lake.manifest["tables"][table]
    writer = dict(src["writer"])
    largest = max(src["files"], key=lambda f: f["bytes"])
    writer["target_file_bytes"] = largest["bytes"]
    # writers that size files by their in-memory (uncompressed) bytes get the same files
    md = pq.ParquetFile(lake.root / largest["path"]).metadata
    writer["target_memory_bytes"] = sum(md.row_group(i).total_byte_size
                                        for i in range(md.num_row_groups))
    return writer


def check_target(out: Path, force: bool, source: Path | None = None) -> None:
    """Refuse an --out the conversion may not write or replace (see check_output: --force
    replaces only a previous lake or an empty directory), or one nested with the source lake,
    which replacing or filling --out would damage."""
    if source is not None:  # (before check_output: its "inside a lake" is less precise)
        target, src = Path(out).resolve(), Path(source).resolve()
        if target == src:
            raise ConvertError("--out must differ from --lake")
        if target.is_relative_to(src) or src.is_relative_to(target):
            raise ConvertError(f"--out {out} and the source lake {source} are inside one "
                               "another: give an --out apart from the lake")
    check_output(out, force, ConvertError)


class ConvertOutOfRoom(Exception):
    """The disk filled while a format lake was written; the partial lake has been removed."""

    def __init__(self, out: Path, fmt: str, written: int, done: int, total: int,
                 source_bytes: int) -> None:
        super().__init__(
            f"no space left on the device of {out} after writing {_size(written)} of the "
            f"{fmt} lake ({done} of {total} tables done; the source lake's data files take "
            f"{_size(source_bytes)}, a guide to what the {fmt} lake needs). The partial lake "
            "was removed: free some space, or convert into a filesystem with more room")


def _size(n: int) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def convert(lake: Lake, fmt_name: str, out: Path, force: bool = False,
            progress: Progress | None = None) -> FormatLake:
    """Build the format lake at `out` from the Parquet lake `lake`. Whatever stops it (a
    failure, a full disk: ConvertOutOfRoom, Ctrl-C: GenerationStopped), the partial lake is
    removed (see generators.lake.output_or_nothing)."""
    if lake.manifest is None:
        raise LakeError(f"{lake.root} has no {MANIFEST}: convert needs a generated lake")
    if lake.manifest.get("format"):
        raise LakeError(f"{lake.root} is already a {lake.manifest['format']} lake")
    fmt = get(fmt_name)
    check_target(out, force, lake.root)
    lake.validate()
    # resolved: formats that record absolute paths (Iceberg) must find them from any directory
    out = Path(out).resolve()
    tables = list(lake.manifest["tables"])
    done = [0]
    source_bytes = sum(f["bytes"] for t in lake.manifest["tables"].values() for f in t["files"])

    def full(written: int) -> ConvertOutOfRoom:
        return ConvertOutOfRoom(out, fmt.name, written, done[0], len(tables), source_bytes)

    with output_or_nothing(out, full):
        mark_unfinished(out)
        flake = _convert_tables(lake, fmt, out, tables, done, progress)
    (out / UNFINISHED).unlink()
    if progress:
        progress("convert", len(tables), len(tables))
    return flake


def _convert_tables(lake: Lake, fmt, out: Path, tables: list[str], done: list[int],  # noqa: ANN001
                    progress: Progress | None) -> FormatLake:
    manifest = {k: v for k, v in lake.manifest.items() if k != "tables"}
    manifest.update(format=fmt.name, format_version=FORMAT_VERSION,
                    source_lake=str(lake.root.resolve()), lineage=lake.lineage.to_json(),
                    tables={})
    flake = FormatLake(out, manifest, lake.lineage)
    t_start = time.perf_counter()
    try:
        _write_tables(lake, fmt, flake, tables, done, progress)
        fmt.finish_conversion(flake)
    finally:
        fmt.release(flake)  # a failed conversion's lake is removed: nothing may hold it open
    manifest["conversion_seconds"] = round(time.perf_counter() - t_start, 3)
    flake.write_manifest()
    return flake


def _write_tables(lake: Lake, fmt, flake: FormatLake, tables: list[str],  # noqa: ANN001
                  done: list[int], progress: Progress | None) -> None:
    manifest = flake.manifest
    for i, table in enumerate(tables):
        if progress:
            progress(f"convert {table}", i, len(tables))
        t0 = time.perf_counter()
        schema, partition_by = table_schema(lake, table)
        src = lake.manifest["tables"][table]
        writer = format_writer(lake, table)
        fmt.create_table(flake, table, schema, partition_by,
                         table_batches(lake, table, schema), writer)
        rows = fmt.row_count(flake, table)
        expected = sum(f["rows"] for f in src["files"])
        if rows != expected:
            raise RuntimeError(f"{fmt.name} {table}: {rows} rows after conversion, the source "
                               f"has {expected}")
        manifest["tables"][table] = {
            "kind": src["kind"], "keys": src["keys"], "reach": src.get("reach"),
            "rows": src["rows"], "rows_by_region": src["rows_by_region"],
            "replica_rows": src.get("replica_rows", 0), "rows_stored": rows,
            "partition_by": partition_by, "columns": schema.names,
            "source_writer": src["writer"], "seconds": round(time.perf_counter() - t0, 3)}
        done[0] = i + 1
