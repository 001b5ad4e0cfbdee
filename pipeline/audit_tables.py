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
import shutil
import sqlite3
import struct
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.audit_unpack import current_dir

# a column: (name, values, the row of each value or None for one value per row)
Column = tuple[str, pa.Array, "np.ndarray | None"]

# What is held at a time: rows of a SQLite or Avro file turned into Arrow (at most so many
# rows or bytes of values); a page of a DuckDB table (a row may hold a 1 MB blob)
PYTHON_ROWS = 4096
PYTHON_BYTES = 32 << 20
PAGE_BYTES = 16 << 20  # about what a page of a DuckDB table holds
AVRO_DEPTH = 200  # an Avro schema nested deeper is not read (fastavro's C reader overflows)
AVRO_MAP_PATHS = 10_000  # nor one with more map fields than this (listed as unreadable)


class PartiallyRead(Exception):
    """A table file that broke off: what was found before the damage, and why."""

    def __init__(self, found: list, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.found, self.cause = found, cause


_UNOPENABLE = (
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"LZIP", "an lzip file"),
    (b"\x02\x21\x4c\x18", "a legacy-LZ4 file"),
    (b"\xff\x06\x00\x00sNaPpY", "a framed-Snappy file"),
    (b"MSCF\x00\x00\x00\x00", "a cabinet (.cab) archive"),
    (b"xar!", "a xar archive"),
    (b"!<arch>\n", "an ar archive"),
)


def unopenable_format(head: bytes) -> str | None:
    """What a file is, by its magic bytes, when it is a container the audit cannot open."""
    if head.startswith(b"\x1f\x9d") and len(head) > 2 and not head[2] & 0x60 \
            and 9 <= head[2] & 0x1F <= 16:  # (flags: max code bits 9-16, reserved bits clear)
        return "a Unix-compressed (.Z) file"
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


# how each format that has one ends: ORC with its postscript's magic field (protobuf field
# 8000, "ORC") and one length byte; Arrow IPC and Feather v1 with their magic
_TAILS = {"arrow": (b"ARROW1", 0), "feather1": (b"FEA1", 0), "orc": (b"\x82\xf4\x03\x03ORC", 1)}


def table_kind(path: Path, head: bytes) -> str | None:
    """The table format of a file, by its first bytes and, where the format has them, its last
    (text that starts with "ORC" is no ORC file). A file whose head announces a format and
    whose tail does not is `cut:<kind>` (cut off, or damaged; see table_columns)."""
    kind = table_kind_of_head(head)
    if kind not in _TAILS:
        return kind
    magic, after = _TAILS[kind]
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - len(magic) - after))
        tail = fh.read()
    if tail[:len(tail) - after] == magic:
        return kind
    # text may start "ORC" or "FEA1"; a table file's head is binary
    binary = b"\x00" in head or not _is_utf8(head)
    return f"cut:{kind}" if kind == "arrow" or binary else None


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode()
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4  # a character cut by the head's end
    return True


def table_columns(path: Path, kind: str) -> Iterator[Column]:
    """The columns of a table file, a batch at a time (every table's, for a database). A
    `cut:<kind>` file yields what can be read before the damage, then raises."""
    if kind.startswith("cut:"):
        yield from _cut(path, kind.removeprefix("cut:"))
        return
    yield from _READERS[kind](path)


def _cut(path: Path, kind: str) -> Iterator[Column]:
    if kind == "arrow":  # an IPC file is a stream after its 8-byte head: read it up to the cut
        with pa.memory_map(str(path)) as source:
            body = source.read_buffer()[8:]
        reader = pa.ipc.open_stream(body)
        yield from _batches_columns(reader)
    raise ValueError(f"starts as {_NAMES[kind]} but does not end as one (cut off or damaged)")


_NAMES = {"arrow": "an Arrow IPC file", "feather1": "a Feather v1 file", "orc": "an ORC file"}


def _batches_columns(batches: Iterable[pa.RecordBatch | pa.Table], prefix: str = ""
                     ) -> Iterator[Column]:
    for batch in batches:
        # a damaged IPC file can hold offsets past its buffers, which the search kernels would
        # read out of bounds (a segfault): checked first
        batch.validate(full=True)
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

    # one thread: an audit reads many files at once (a scan of rows of 200 KB blobs needs
    # ~400 MB: a vector of them, so the limit is no lower)
    con = duckdb.connect(str(path), read_only=True,
                         config={"threads": 1, "memory_limit": "512MB"})
    try:
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() order by all").fetchall()
        for schema, table in tables:
            name = f"{_quote(schema)}.{_quote(table)}"
            columns = [c for c, in con.execute(
                "select column_name from duckdb_columns() where database_name = "
                "current_database() and schema_name = ? and table_name = ?",
                [schema, table]).fetchall()]
            for page in _duckdb_pages(con, name, columns):
                yield from _batches_columns(page.to_batches(), f"{schema}.{table}.")
    finally:
        con.close()


def _duckdb_pages(con: object, name: str, columns: list[str]) -> Iterator[pa.Table]:
    """A table a page at a time (DuckDB's Arrow readers materialize the whole result first):
    by row id, which DuckDB prunes by, in pages of about PAGE_BYTES (from 64 rows, as a row
    may be a large blob, to 65,536)."""
    run = con.execute  # type: ignore[attr-defined]
    rows = 64
    if any(c.lower() == "rowid" for c in columns):
        # a column named rowid hides the row id: pages by position (each skips the rows
        # before it: slower)
        offset = 0
        while True:
            page = run(f"select * from {name} limit {rows} offset {offset}").to_arrow_table()
            if not page.num_rows:
                return
            yield page
            offset += page.num_rows
            rows = _next_page_rows(page, rows)
    lo, hi = run(f"select min(rowid), max(rowid) from {name}").fetchone()
    start = lo
    while start is not None and start <= hi:
        yield (page := run(f"select * from {name} where rowid >= {start} and "
                           f"rowid < {start + rows}").to_arrow_table())
        start += rows
        rows = _next_page_rows(page, rows)


def _next_page_rows(page: pa.Table, rows: int) -> int:
    """Rows of the next page: about PAGE_BYTES at the last page's width, growing at most
    fourfold a page (the rows ahead may be wider)."""
    width = max(1, page.nbytes // max(page.num_rows, 1))
    return max(16, min(PAGE_BYTES // width, rows * 4, 1 << 16))


def _sqlite(path: Path) -> Iterator[Column]:
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        # rows committed to the write-ahead log but not yet into the file: read from a copy of
        # both (opening the lake's own would write beside it), in the audit's private directory
        with tempfile.TemporaryDirectory(prefix="sqlite-", dir=current_dir()) as d:
            copy = Path(d) / "db"
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, Path(d) / "db-wal")
            yield from _sqlite_tables(sqlite3.connect(copy))
        return
    # read-only and immutable: no lock taken, no journal written beside the file
    yield from _sqlite_tables(
        sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True))


def _sqlite_tables(con: sqlite3.Connection) -> Iterator[Column]:
    try:
        tables = [r[0] for r in con.execute(
            "select name from sqlite_master where type = 'table' order by name")]
        for table in tables:
            cur = con.execute(f"select * from {_quote(table)}")
            names = [d[0] for d in cur.description]
            leaves = _Leaves(f"{table}.")
            for r in cur:  # a row at a time: a row may hold a large blob
                leaves.add(dict(zip(names, r, strict=True)))
                if leaves.full():
                    yield from leaves.drain()
            yield from leaves.drain()
    finally:
        con.close()


def _avro(path: Path) -> Iterator[Column]:
    import fastavro

    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        maps, recursive = _avro_shape(reader.writer_schema)
        if recursive:
            # fastavro's C reader recurses into nested data on the C stack, unchecked: a deep
            # enough file crashes the process; the pure-Python reader raises RecursionError
            from fastavro._read_py import reader as py_reader

            fh.seek(0)
            reader = py_reader(fh)
        leaves = _Leaves("", maps)
        for record in reader:
            leaves.add(record)
            if leaves.full():
                yield from leaves.drain()
        yield from leaves.drain()


def _avro_shape(schema: object) -> tuple[frozenset[str], bool]:
    """The paths (as _flatten names them) that are maps, and whether a named type nests in
    itself. Each named type is walked once (its map paths relative to where it is used), so a
    type used twice at every level costs no more than once."""
    named: dict[str, dict] = {}
    done: dict[str, tuple[frozenset[str], bool]] = {}
    busy: set[str] = set()

    def join(a: str, b: str) -> str:
        return f"{a}.{b}" if a and b else a or b

    def resolve(name: str) -> str | None:
        if name in named:
            return name
        return next((k for k in named if k.rpartition(".")[2] == name), None)

    def walk(t: object, depth: int) -> tuple[frozenset[str], bool]:
        if depth > AVRO_DEPTH:
            raise ValueError(f"an Avro schema nested more than {AVRO_DEPTH} levels deep")
        if isinstance(t, list):  # a union
            shapes = [walk(branch, depth + 1) for branch in t]
            return frozenset().union(*(m for m, _ in shapes)), any(r for _, r in shapes)
        if isinstance(t, str):
            key = resolve(t)
            if key is None:  # a primitive
                return frozenset(), False
            if key in busy:
                return frozenset(), True
            return done[key] if key in done else named_shape(key, depth)
        if not isinstance(t, dict):
            return frozenset(), False
        kind = t.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(t.get("name", ""))
            named[name] = t
            return named_shape(name, depth)
        if kind == "map":
            values, rec = walk(t.get("values"), depth + 1)
            return frozenset({""} | {join("value", v) for v in values}), rec
        if kind == "array":
            return walk(t.get("items"), depth + 1)
        if isinstance(kind, dict | list):
            return walk(kind, depth + 1)
        return frozenset(), False

    def named_shape(name: str, depth: int) -> tuple[frozenset[str], bool]:
        busy.add(name)
        maps: set[str] = set()
        rec = False
        for f in named[name].get("fields", []) if named[name].get("type") in (
                "record", "error") else []:
            m, r = walk(f["type"], depth + 1)
            maps |= {join(f["name"], x) for x in m}
            rec |= r
            if len(maps) > AVRO_MAP_PATHS:  # a type used twice at every level: 2^levels
                raise ValueError(f"an Avro schema with more than {AVRO_MAP_PATHS:,} map fields")
        busy.discard(name)
        done[name] = (frozenset(maps), rec)
        return done[name]

    return walk(schema, 0)


_READERS = {"arrow": _arrow_file, "arrow_stream": _arrow_stream, "feather1": _feather1,
            "orc": _orc, "duckdb": _duckdb, "sqlite": _sqlite, "avro": _avro}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_INT64 = (-(1 << 63), (1 << 63) - 1)


class _Leaves:
    """Python records (dicts, nested) gathered as typed leaf columns: integers, text, bytes;
    each value with the row it came from (a list's items all count for their row; a map's
    keys are values of `name.key`, its values `name.value…`)."""

    def __init__(self, prefix: str, maps: frozenset[str] = frozenset()) -> None:
        self.prefix, self.maps = prefix.rstrip("."), maps
        self.leaves: dict[tuple[str, str], tuple[list, list]] = {}
        self.rows = 0
        self.bytes = 0

    def add(self, record: object) -> None:
        _flatten(record, self.prefix, self.rows, self)
        self.rows += 1

    def full(self) -> bool:
        return self.rows >= PYTHON_ROWS or self.bytes >= PYTHON_BYTES

    def drain(self) -> Iterator[Column]:
        types = {"int": pa.int64(), "str": pa.large_string(), "bytes": pa.large_binary()}
        leaves, self.leaves, self.rows, self.bytes = self.leaves, {}, 0, 0
        for (name, kind), (rows, values) in leaves.items():
            yield name, pa.array(values, types[kind]), np.asarray(rows, np.int64)


def _flatten(value: object, name: str, row: int, into: _Leaves) -> None:
    kind = None
    if isinstance(value, dict):
        if name in into.maps or (not name and "" in into.maps):
            for k, v in value.items():
                _flatten(k, f"{name}.key" if name else "key", row, into)
                _flatten(v, f"{name}.value" if name else "value", row, into)
            return
        for k, v in value.items():
            _flatten(v, f"{name}.{k}" if name else str(k), row, into)
        return
    if isinstance(value, list | tuple):
        for v in value:
            _flatten(v, name, row, into)
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
    rows, values = into.leaves.setdefault((name, kind), ([], []))
    rows.append(row)
    values.append(value)
    into.bytes += len(value) if kind != "int" else 8
