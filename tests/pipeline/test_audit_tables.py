"""The audit reads table files that are not Parquet through their values: a byte search misses
what they store compressed or encoded (ORC and Arrow IPC compress their buffers, DuckDB its
strings, Avro and SQLite store integers as varints)."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from pipeline.audit import run_audit
from pipeline.audit_tables import table_kind
from pipeline.lake import Lake
from tests.pipeline.test_audit import _scrubbed_with_exports


def _rows(pq_export: Path) -> pa.Table:
    """The erased customer's PII row, as exported before the scrub, plus a key kept as text
    in a column of another name (as an export may cast it)."""
    t = pl.read_parquet(pq_export).select("customer_id", "full_name", "email", "phone").to_arrow()
    return t.append_column("ref", t["customer_id"].cast(pa.string()))


def _write_arrow(t: pa.Table, p: Path) -> None:
    import pyarrow.feather as feather

    feather.write_feather(t, p, compression="zstd")  # compressed buffers: no byte finds them


def _write_arrow_stream(t: pa.Table, p: Path) -> None:
    with pa.OSFile(str(p), "wb") as sink, pa.ipc.new_stream(
            sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(t)


def _write_orc(t: pa.Table, p: Path) -> None:
    import pyarrow.orc as orc

    orc.write_table(t, p, compression="zstd")


def _write_duckdb(t: pa.Table, p: Path) -> None:
    import duckdb

    con = duckdb.connect(str(p))
    con.register("src", t)
    con.execute("create schema crm")
    con.execute("create table crm.people as select * from src")
    con.close()


def _write_sqlite(t: pa.Table, p: Path) -> None:
    con = sqlite3.connect(p)
    cols = t.column_names
    con.execute(f"create table people ({', '.join(cols)})")
    con.executemany(f"insert into people values ({', '.join('?' * len(cols))})",
                    [tuple(r.values()) for r in t.to_pylist()])
    con.commit()
    con.close()


def _write_avro(t: pa.Table, p: Path) -> None:
    import fastavro

    fields = [{"name": n, "type": ["null", "long" if pa.types.is_integer(t.schema.field(n).type)
                                   else "string"]} for n in t.column_names]
    rows = t.to_pylist()
    # nested: the same row inside a record inside an array
    schema = {"type": "record", "name": "export", "fields": [
        {"name": "person", "type": {"type": "record", "name": "person", "fields": fields}},
        {"name": "history", "type": {"type": "array", "items": "long"}}]}
    with open(p, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema),
                        [{"person": r, "history": [1, 2]} for r in rows], codec="deflate")


WRITERS = {"arrow": _write_arrow, "arrow_stream": _write_arrow_stream, "orc": _write_orc,
           "duckdb": _write_duckdb, "sqlite": _write_sqlite, "avro": _write_avro}
COLUMNS = {"arrow": "", "arrow_stream": "", "orc": "", "duckdb": "crm.people.",
           "sqlite": "people.", "avro": "person."}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_table_files_are_read_through_their_values(date_src: Path, tmp_path: Path,
                                                  kind: str) -> None:
    lake, erased, _, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    t = _rows(pq_export)
    ex = lake / "exports"
    ex.mkdir()
    WRITERS[kind](t, ex / f"customer.{kind}")
    assert table_kind(ex / f"customer.{kind}",
                      (ex / f"customer.{kind}").read_bytes()[:512]) == kind
    # …and the same file inside a zip, read as a member
    with zipfile.ZipFile(ex / "backup.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(ex / f"customer.{kind}", f"dump/customer.{kind}")
    report = run_audit(Lake.open(lake), np.array([erased]))
    found = {(f.path, f.column, f.kind) for f in report.residue}
    prefix = COLUMNS[kind]
    assert {(f"exports/customer.{kind}", f"{prefix}customer_id", "customer_id"),
            (f"exports/customer.{kind}", f"{prefix}email", "email"),
            (f"exports/customer.{kind}", f"{prefix}phone", "phone"),
            ("exports/backup.zip", f"(zip) dump/customer.{kind}: {prefix}customer_id",
             "customer_id")} <= found, found
    assert not report.unreadable
    (ex / "backup.zip").unlink()
    (ex / f"customer.{kind}").unlink()
    assert run_audit(Lake.open(lake), np.array([erased])).clean


def test_lz4_frames_and_unopenable_archives(date_src: Path, tmp_path: Path) -> None:
    """An LZ4-compressed export is read inside; an archive the audit cannot open (7z) is
    listed as unreadable, so the audit cannot say clean; text that merely starts like a
    format (ORC, a continuation marker) is plain text."""
    lake, erased, csv, _ = _scrubbed_with_exports(date_src, tmp_path)
    ex = lake / "exports"
    ex.mkdir()
    (ex / "history.csv.lz4").write_bytes(pa.Codec("lz4").compress(csv, asbytes=True))
    (ex / "old.7z").write_bytes(b"7z\xbc\xaf\x27\x1c" + np.random.default_rng(0).bytes(4000))
    (ex / "orcid.txt").write_bytes(b"ORCID 0000-0002-1825-0097, nothing else\n")
    (ex / "marker.bin").write_bytes(b"\xff\xff\xff\xff" + b"\x00" * 100)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("deep.7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 100)
    (ex / "outer.zip").write_bytes(inner.getvalue())
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert ("exports/history.csv.lz4", "(lz4)", "recording_id") in {
        (f.path, f.column, f.kind) for f in report.residue}
    unreadable = "\n".join(report.unreadable)
    assert "exports/old.7z: a 7z archive, which the audit cannot open" in unreadable
    assert "exports/outer.zip (zip) deep.7z: a 7z archive" in unreadable
    assert "orcid" not in unreadable and "marker" not in unreadable
    assert not report.clean


def test_a_damaged_table_file_is_listed_as_unreadable(date_src: Path, tmp_path: Path) -> None:
    lake, erased, _, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    ex = lake / "exports"
    ex.mkdir()
    _write_sqlite(_rows(pq_export), ex / "crm.sqlite")
    data = bytearray((ex / "crm.sqlite").read_bytes())
    data[100:] = b"\xee" * (len(data) - 100)  # the header stays, every page is garbage
    (ex / "crm.sqlite").write_bytes(bytes(data))
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert any(u.startswith("exports/crm.sqlite: ") for u in report.unreadable), \
        report.unreadable
    assert not report.clean


def _ids(report: object) -> set[tuple[str, str, str]]:
    return {(f.path, f.column, f.kind) for f in report.residue}  # type: ignore[attr-defined]


def test_what_a_reader_would_skip_is_still_searched(date_src: Path, tmp_path: Path) -> None:
    """Column types without plain values (unions, extension types, run-end encoded), a table
    file holding a zip near its end, rows still in SQLite's write-ahead log, an Avro map's keys
    and Snappy blocks, a DuckDB table of more than one page, an LZMA-alone file: each was
    missed by a first version of this reader (a review's reproductions)."""
    import lzma

    import duckdb
    import fastavro

    lake, erased, csv, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    row = _rows(pq_export).to_pylist()[0]
    email = row["email"]
    ex = lake / "exports"
    ex.mkdir()
    union = pa.UnionArray.from_sparse(pa.array([0, 1], pa.int8()), [
        pa.array([erased, 0], pa.int64()), pa.array(["x", email])], ["i", "s"])
    ree = pa.RunEndEncodedArray.from_arrays(pa.array([2], pa.int32()), pa.array([email]))
    json = pa.ExtensionArray.from_storage(pa.json_(), pa.array([f'{{"e": "{email}"}}', "{}"]))
    t = pa.table({"customer_id": union, "contact": ree, "payload": json})
    _write_arrow(t, ex / "types.arrow")
    _write_sqlite(_rows(pq_export), ex / "crm.sqlite")  # with a zip (an attachment) at its end
    with zipfile.ZipFile(ex / "crm.sqlite", "a") as zf:
        zf.writestr("attachment.txt", "nothing personal")
    con = sqlite3.connect(ex / "wal.sqlite")
    con.execute("pragma journal_mode=wal")
    con.execute("pragma wal_autocheckpoint=0")
    con.execute("create table orders (customer_id integer, total real)")
    con.commit()
    con.execute("insert into orders values (?, 9.5)", (erased,))
    con.commit()  # in the WAL only: the process ends without a checkpoint
    import shutil
    for suffix in ("", "-wal"):
        shutil.copyfile(ex / f"wal.sqlite{suffix}", tmp_path / f"snap.sqlite{suffix}")
    con.close()
    for suffix in ("", "-wal"):
        shutil.copyfile(tmp_path / f"snap.sqlite{suffix}", ex / f"wal.sqlite{suffix}")
    (ex / "wal.sqlite-shm").unlink(missing_ok=True)
    schema = fastavro.parse_schema({"type": "record", "name": "r", "fields": [
        {"name": "by_email", "type": {"type": "map", "values": "long"}}]})
    with open(ex / "maps.avro", "wb") as fh:
        fastavro.writer(fh, schema, [{"by_email": {email: 1}}], codec="snappy")
    con = duckdb.connect(str(ex / "big.duckdb"))
    con.execute("create table people as select range as customer_id from range(100000, 300000)")
    con.execute(f"insert into people values ({erased})")  # on the last page
    con.close()
    (ex / "history.csv.lzma").write_bytes(lzma.compress(csv, format=lzma.FORMAT_ALONE))
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert not report.unreadable, report.unreadable
    assert {("exports/types.arrow", "customer_id", "customer_id"),
            ("exports/types.arrow", "customer_id", "email"),
            ("exports/types.arrow", "contact", "email"),
            ("exports/types.arrow", "payload", "email"),
            ("exports/crm.sqlite", "people.customer_id", "customer_id"),
            ("exports/wal.sqlite", "orders.customer_id", "customer_id"),
            ("exports/maps.avro", "by_email.key", "email"),
            ("exports/big.duckdb", "main.people.customer_id", "customer_id"),
            ("exports/history.csv.lzma", "(lzma)", "recording_id")} <= _ids(report)
    assert (ex / "wal.sqlite-wal").read_bytes() == (tmp_path / "snap.sqlite-wal").read_bytes()


def test_damaged_table_files_keep_what_was_found_and_never_crash(date_src: Path,
                                                                 tmp_path: Path) -> None:
    """A cut Arrow file is read up to the cut; a damaged offset (which would make the search
    read out of memory) and an Avro file nested thousands of levels deep (which overflows
    fastavro's C reader) are listed as unreadable, the audit itself carries on; text that
    only starts like a format raises no alarm."""
    import pyarrow.feather as feather

    lake, erased, _, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    ex = lake / "exports"
    ex.mkdir()

    feather.write_feather(_rows(pq_export), ex / "whole.arrow", compression="uncompressed")
    whole = (ex / "whole.arrow").read_bytes()
    (ex / "cut.arrow").write_bytes(whole[:-40])
    (ex / "whole.arrow").unlink()
    emails = [f"user{i}@example.org" for i in range(2000)]
    feather.write_feather(pa.table({"email": emails}), ex / "damaged.arrow",
                          compression="uncompressed")
    data = bytearray((ex / "damaged.arrow").read_bytes())
    offsets = np.cumsum([0] + [len(e) for e in emails]).astype("<i4")
    at = bytes(data).find(offsets[100:110].tobytes())
    data[at + 20:at + 24] = np.array([0x7FFFFF00], "<i4").tobytes()
    (ex / "damaged.arrow").write_bytes(bytes(data))
    # a linked list 5,000 records deep: the header as fastavro writes it, one block by hand
    # (each node: v = 1, then the union's branch: 1 = another node, 0 = null)
    import fastavro

    schema = fastavro.parse_schema({"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]})
    head = io.BytesIO()
    fastavro.writer(head, schema, [])
    header = head.getvalue()
    block = b"\x02\x02" * 4999 + b"\x02\x00"
    (ex / "chain.avro").write_bytes(header + b"\x02" + _zigzag(len(block)) + block
                                    + header[-16:])
    (ex / "notes.txt").write_bytes(b"ORC migration: every export table is now written as ORC\n")
    (ex / "sensor.bin").write_bytes(bytes([0x1F, 0x9D]) + bytes(range(256)) * 4)
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert {("exports/cut.arrow", "customer_id", "customer_id"),
            ("exports/cut.arrow", "email", "email")} <= _ids(report)
    unreadable = "\n".join(report.unreadable)
    assert "exports/cut.arrow: ValueError: starts as an Arrow IPC file" in unreadable
    assert "exports/damaged.arrow: ArrowInvalid" in unreadable
    assert "exports/chain.avro: RecursionError" in unreadable
    assert "notes.txt" not in unreadable and "sensor.bin" not in unreadable


def _zigzag(n: int) -> bytes:
    """Avro's long: zigzag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_duckdb_tables_are_paged_whatever_their_rows_hold(tmp_path: Path) -> None:
    """Pages by row id follow the rows' width (narrow rows, then blobs); a column the user
    named `rowid` hides DuckDB's row id, and such a table is paged by position instead."""
    import duckdb

    from pipeline import audit_tables

    db = tmp_path / "t.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table mixed as select range as id, null::blob as b from range(64)")
    con.execute("insert into mixed select 64 + range, repeat('x', 200000)::blob from range(200)")
    con.execute("create table shadow (rowid varchar, customer_id bigint)")
    con.execute("insert into shadow select 'r' || range, range from range(1000)")
    con.close()
    ids = [(name, col) for name, col, _ in audit_tables.table_columns(db, "duckdb")]
    got = pa.concat_arrays([c for n, c in ids if n == "main.mixed.id"]).to_pylist()
    assert sorted(got) == list(range(264))
    # pages follow the rows' width (growing at most fourfold a page): 4 x 64 rows of blobs
    # at most, not a vector of 2,048 (400 MB)
    assert max(c.nbytes for n, c in ids if n == "main.mixed.b") <= 256 * 200_000 + 4096
    shadow = pa.concat_arrays([c for n, c in ids if n == "main.shadow.customer_id"])
    assert sorted(shadow.to_pylist()) == list(range(1000))


def test_an_avro_schema_that_reuses_its_types_is_walked_once() -> None:
    """Each level using the next type twice doubled the work per level (20 levels: 19 s); the
    map fields such a schema has double too, so past a cap it is refused (listed as
    unreadable), not walked."""
    from pipeline.audit_tables import AVRO_MAP_PATHS, _avro_shape

    def schema(levels: int) -> dict:
        defs: list = [{"type": "record", "name": f"T{levels}",
                       "fields": [{"name": "x", "type": "long"}]}]
        for i in range(levels - 1, -1, -1):
            defs.append({"type": "record", "name": f"T{i}", "fields": [
                {"name": "l", "type": f"T{i + 1}"}, {"name": "r", "type": f"T{i + 1}"},
                {"name": "m", "type": {"type": "map", "values": "long"}}]})
        return {"type": "record", "name": "W", "fields": [
            {"name": f"d{i}", "type": ["null", d]} for i, d in enumerate(defs)]}

    maps, recursive = _avro_shape(schema(8))
    assert not recursive and {"d8.m", "d8.l.r.m", "d8.r.r.r.r.r.r.r.m"} <= maps
    assert len(maps) < AVRO_MAP_PATHS
    with pytest.raises(ValueError, match="map fields"):
        _avro_shape(schema(40))  # 2^40 map fields
