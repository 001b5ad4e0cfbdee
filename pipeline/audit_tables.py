"""Files that hold tables but are not Parquet, opened so the audit reads their values.

A byte search misses what such a file stores encoded or compressed: ORC and Arrow IPC
compress their buffers, DuckDB compresses strings (FSST) and integers (bit-packing), Avro and
SQLite store integers as varints, Avro blocks are deflated. Each is opened with a reader and
its columns handed out as Arrow arrays, which the audit searches as it searches an export's
Parquet columns:

- Arrow IPC files (Feather v2) and streams, Feather v1, ORC: by pyarrow, a batch or stripe at
  a time;
- DuckDB databases: every table, read-only, a batch at a time;
- SQLite databases: every table, a few thousand rows at a time (values as SQLite typed them);
- Avro container files: by fastavro, records flattened to their leaf values (`a.b` for a field
  of a nested record; the items of an array or map count for their record).

Containers the audit cannot open (7z, RAR, …) are named by `unopenable_format`: the audit
lists them as unreadable instead of passing them as plain bytes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sqlite3
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

# a column: (name, values, the row of each value or None for one value per row)
Column = tuple[str, pa.Array, "np.ndarray | None"]

PYTHON_ROWS = 4096  # rows of a SQLite or Avro file turned into Arrow at a time
BATCH_ROWS = 65536  # rows of a DuckDB table read at a time

_UNOPENABLE = (
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x1f\x9d", "a Unix-compressed (.Z) file"),
    (b"LZIP", "an lzip file"),
    (b"\x02\x21\x4c\x18", "a legacy-LZ4 file"),
    (b"\xff\x06\x00\x00sNaPpY", "a framed-Snappy file"),
    (b"MSCF\x00\x00\x00\x00", "a cabinet (.cab) archive"),
    (b"xar!", "a xar archive"),
    (b"!<arch>\n", "an ar archive"),
)


def unopenable_format(head: bytes) -> str | None:
    """What a file is, by its magic bytes, when it is a container the audit cannot open."""
    return next((what for magic, what in _UNOPENABLE if head.startswith(magic)), None)


def table_kind_of_head(head: bytes) -> str | None:
    """The table format a stream's first bytes announce (may still prove not to be one)."""
    if head.startswith(b"ARROW1"):
        return "arrow"
    if head.startswith(b"FEA1"):
        return "feather1"
    if head.startswith(b"ORC"):
        return "orc"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"Obj\x01"):
        return "avro"
    if len(head) >= 20 and head[8:12] == b"DUCK" and struct.unpack("<Q", head[12:20])[0] < 1 << 16:
        return "duckdb"  # (a checksum, the magic, a small storage version)
    if head.startswith(b"\xff\xff\xff\xff") and len(head) >= 8:
        return "arrow_stream"  # a continuation marker: told apart by opening it
    return None


def table_kind(path: Path, head: bytes) -> str | None:
    """The table format of a file, by its first bytes and, where the format has them, its last
    (text that starts with "ORC" is no ORC file)."""
    kind = table_kind_of_head(head)
    tail_magic = {"arrow": b"ARROW1", "feather1": b"FEA1", "orc": b"ORC"}.get(kind or "")
    if tail_magic is not None:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < len(tail_magic) + 1:
                return None
            fh.seek(size - len(tail_magic) - 1)
            tail = fh.read()
        # ORC ends with its postscript's magic and one length byte; the others end with theirs
        found = tail[:-1] if kind == "orc" else tail[1:]
        if found != tail_magic:
            return None
    return kind


def table_columns(path: Path, kind: str) -> Iterator[Column]:
    """The columns of a table file, a batch at a time (every table's, for a database)."""
    yield from _READERS[kind](path)


def _batches_columns(batches: Iterator[pa.RecordBatch | pa.Table], prefix: str = ""
                     ) -> Iterator[Column]:
    for batch in batches:
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            yield f"{prefix}{name}", col, None


def _arrow_file(path: Path) -> Iterator[Column]:
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        yield from _batches_columns(reader.get_batch(i) for i in range(reader.num_record_batches))


def _arrow_stream(path: Path) -> Iterator[Column]:
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError):
            return  # a continuation marker by chance, not a stream: its bytes were searched
        yield from _batches_columns(reader)


def _feather1(path: Path) -> Iterator[Column]:
    import pyarrow.feather as feather

    yield from _batches_columns(iter([feather.read_table(str(path), memory_map=True)]))


def _orc(path: Path) -> Iterator[Column]:
    import pyarrow.orc as orc

    f = orc.ORCFile(str(path))
    yield from _batches_columns(f.read_stripe(i) for i in range(f.nstripes))


def _duckdb(path: Path) -> Iterator[Column]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "select database_name, schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() order by all").fetchall()
        for _, schema, table in tables:
            reader = con.execute(f"select * from {_quote(schema)}.{_quote(table)}"
                                 ).to_arrow_reader(BATCH_ROWS)
            yield from _batches_columns(reader, f"{schema}.{table}.")
    finally:
        con.close()


def _sqlite(path: Path) -> Iterator[Column]:
    # read-only and immutable: no lock taken, no journal written beside the file
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "select name from sqlite_master where type = 'table' order by name")]
        for table in tables:
            cur = con.execute(f"select * from {_quote(table)}")
            names = [d[0] for d in cur.description]
            while rows := cur.fetchmany(PYTHON_ROWS):
                records = [dict(zip(names, r, strict=True)) for r in rows]
                yield from _python_columns(records, f"{table}.")
    finally:
        con.close()


def _avro(path: Path) -> Iterator[Column]:
    import fastavro

    with open(path, "rb") as fh:
        records: list = []
        for record in fastavro.reader(fh):
            records.append(record)
            if len(records) == PYTHON_ROWS:
                yield from _python_columns(records)
                records = []
        if records:
            yield from _python_columns(records)


_READERS = {"arrow": _arrow_file, "arrow_stream": _arrow_stream, "feather1": _feather1,
            "orc": _orc, "duckdb": _duckdb, "sqlite": _sqlite, "avro": _avro}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_INT64 = (-(1 << 63), (1 << 63) - 1)


def _python_columns(records: list, prefix: str = "") -> Iterator[Column]:
    """Python records (dicts, nested) as typed leaf columns: integers, text, bytes; each value
    with the row it came from (a list's items all count for their row)."""
    leaves: dict[tuple[str, str], tuple[list, list]] = {}
    for row, record in enumerate(records):
        _flatten(record, prefix.rstrip("."), row, leaves)
    types = {"int": pa.int64(), "str": pa.large_string(), "bytes": pa.large_binary()}
    for (name, kind), (rows, values) in leaves.items():
        yield name, pa.array(values, types[kind]), np.asarray(rows, np.int64)


def _flatten(value: object, name: str, row: int,
             leaves: dict[tuple[str, str], tuple[list, list]]) -> None:
    kind = None
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{name}.{k}" if name else str(k), row, leaves)
        return
    if isinstance(value, list | tuple):
        for v in value:
            _flatten(v, name, row, leaves)
        return
    if isinstance(value, bool) or value is None:
        return
    # an id stored as a number of another kind; other numbers hold no key
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) > 2.0**53:
            return
        value = int(value)
    elif isinstance(value, decimal.Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return
        value = int(value)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            value, kind = str(value), "str"
        else:
            kind = "int"
    elif isinstance(value, str):
        kind = "str"
    elif isinstance(value, bytes | bytearray | memoryview):
        value, kind = bytes(value), "bytes"
    elif isinstance(value, uuid.UUID):
        value, kind = str(value), "str"
    elif isinstance(value, dt.date | dt.time | dt.timedelta):
        return
    else:
        value, kind = str(value), "str"
    rows, values = leaves.setdefault((name, kind), ([], []))
    rows.append(row)
    values.append(value)
