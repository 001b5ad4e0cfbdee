"""Apache Iceberg through pyiceberg: a SQL catalog (sqlite) and a file warehouse in the lake root.

Logical step: `Table.delete(In(column, keys))`. pyiceberg deletes copy-on-write: a data file
holding a deleted row is rewritten, the old one leaves the new snapshot; its bytes stay on disk
and so do the manifests that list it — with its lower/upper bounds, an erased id among them.

Physical step, what a careful user must do with pyiceberg (its `expire_snapshots` only edits
the metadata, it deletes no file):
1. an empty append: the delete's snapshot keeps a manifest of DELETED entries (with the old
   files' bounds); the next snapshot drops manifests that hold no live entry;
2. expire every snapshot but the current one;
3. delete every file under the table's location that the current metadata does not reference:
   old data files, old manifests and manifest lists, old metadata.json files.

Where it lives: the catalog and every metadata file name the lake's files by absolute path, so
an Iceberg lake works only where it was converted. A copied or moved one still names the
original's files: reading it would read the original, and a purge would delete the original's
files and leave the copy's. Opening a lake (`check_in_place`) and loading a table therefore
refuse any location outside the lake root, before anything is read or written.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa

from pipeline.formats.base import FormatLake, StepResult, TableFormat
from pipeline.lake import LakeError

NAMESPACE = "lake"
APPEND_ROWS = 1 << 20  # rows per append while converting (bounded memory)


# (pid, the lake's iceberg dir) -> (catalog.db's identity when opened, the catalog)
_CATALOGS: dict[tuple[int, Path], tuple[tuple[int, int] | None, object]] = {}


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


# table properties that move where pyiceberg writes a table's files away from its location
WRITE_PATH_PROPERTIES = ("write.data.path", "write.metadata.path")


class LakeMovedError(LakeError):
    """An Iceberg lake whose metadata names files outside its root (it was copied or moved)."""


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


def _local_path(uri: str) -> Path | None:
    """The local path a location names, as pyiceberg reads it (the "host" of a file:// URI is
    the start of a relative path); None for another filesystem (s3://…)."""
    u = urlparse(uri)
    if u.scheme == "file":
        return Path(u.netloc + u.path)
    return Path(uri) if not u.scheme else None


def _outside(root: Path, uri: str) -> bool:
    """Does `uri` name something outside the (resolved) lake root?"""
    local = _local_path(uri)
    return local is None or not local.resolve().is_relative_to(root)


def _where(uri: str) -> str:
    """The lake root a location belongs to (`<root>/iceberg/warehouse/…`), else the location."""
    local = _local_path(uri)
    parts = local.parts if local is not None else ()
    for i in range(len(parts) - 2, -1, -1):
        if parts[i:i + 2] == ("iceberg", "warehouse"):
            return str(Path(*parts[:i])) if i else "."
    return uri


def moved_error(flake: FormatLake, uri: str) -> LakeMovedError:
    local = _local_path(uri)
    command = (f"voicescrub convert --lake {flake.manifest.get('source_lake', 'SOURCE')} "
               f"--to iceberg --out {flake.root} --force")
    if local is not None and not local.is_absolute():  # converted before locations were resolved
        return LakeMovedError(
            f"{flake.root} is an Iceberg lake whose metadata holds paths relative to the "
            f"directory it was converted from ({_where(uri)}): use it from there, or convert "
            f"it again ({command})")
    return LakeMovedError(
        f"{flake.root} is an Iceberg lake that was moved or copied (its metadata holds absolute "
        f"paths to another place: {_where(uri)}): convert it again at its new place "
        f"({command})")


def check_locations(flake: FormatLake, uris: Iterable[str]) -> None:
    """Refuse (LakeMovedError) if one of `uris` is outside the lake root."""
    root = flake.root.resolve()
    for uri in uris:
        if _outside(root, uri):
            raise moved_error(flake, uri)


def _catalog_locations(db: Path) -> list[str]:
    """Every location the sqlite catalog holds: tables' metadata files and any namespace
    location (the warehouse itself is not stored: `catalog()` puts it in the root). Read-only:
    a refused lake is left byte-identical."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT metadata_location FROM iceberg_tables "
                           "WHERE metadata_location IS NOT NULL").fetchall()
        rows += con.execute("SELECT property_value FROM iceberg_namespace_properties "
                            "WHERE property_key = 'location'").fetchall()
    except sqlite3.DatabaseError as e:
        raise LakeError(f"cannot read the Iceberg catalog {db}: {e}") from None
    finally:
        con.close()
    return [r[0] for r in rows]


def table_locations(tbl) -> list[str]:  # noqa: ANN001
    """Where a table's files are and where pyiceberg would write new ones."""
    props = tbl.properties
    return [tbl.metadata_location, tbl.location(),
            *(props[k] for k in WRITE_PATH_PROPERTIES if props.get(k))]


class Iceberg(TableFormat):
    name = "iceberg"
    engine = "pyiceberg"
    description = ("Apache Iceberg (pyiceberg, sqlite catalog): delete rewrites files; "
                   "expire snapshots + orphan removal")
    metadata_dirs = ("metadata",)

    def catalog(self, flake: FormatLake):  # noqa: ANN201
        """This process's catalog of the lake, opened once per job, not once per table load
        (an engine and the catalog's schema probe: ~6 ms, hundreds of times in a job). Opened
        again when catalog.db is another file than the one it was opened on (a lake replaced
        between jobs without `release`)."""
        from pyiceberg.catalog.sql import SqlCatalog

        # resolved: the tables' locations are recorded as given, and a relative one would only
        # work from the directory the lake was converted in
        base = flake.root.resolve() / "iceberg"
        base.mkdir(parents=True, exist_ok=True)
        db = base / "catalog.db"
        key = (os.getpid(), base)
        ident = _file_identity(db)
        cached = _CATALOGS.get(key)
        if cached is not None and ident is not None and cached[0] == ident:
            return cached[1]
        self.release(flake)
        cat = SqlCatalog("voicescrub", uri=f"sqlite:///{db}", warehouse=f"file://{base}/warehouse")
        _CATALOGS[key] = (_file_identity(db), cat)
        return cat

    def release(self, flake: FormatLake) -> None:
        cached = _CATALOGS.pop((os.getpid(), flake.root.resolve() / "iceberg"), None)
        if cached is not None:
            cached[1].engine.dispose()  # closes its pooled sqlite connections

    def check_in_place(self, flake: FormatLake) -> None:
        """Refuse a copied or moved lake: the catalog's and every table's locations (its
        metadata file, its location, its write paths) must be inside the root."""
        db = flake.root / "iceberg" / "catalog.db"
        if not db.is_file():
            return  # nothing converted yet: nothing to read or delete
        metadata = _catalog_locations(db)
        check_locations(flake, metadata)  # before any metadata file is read
        from pyiceberg.table import StaticTable

        for uri in metadata:
            if uri.endswith(".metadata.json"):
                check_locations(flake, table_locations(StaticTable.from_metadata(uri)))

    def _table(self, flake: FormatLake, table: str):  # noqa: ANN202
        tbl = self.catalog(flake).load_table(f"{NAMESPACE}.{table}")
        # every read and write goes through here: also guards a lake not opened by
        # FormatLake.open
        check_locations(flake, table_locations(tbl))
        return tbl

    def create_table(self, flake: FormatLake, table: str, schema: pa.Schema,
                     partition_by: list[str], batches: Iterator[pa.RecordBatch],
                     writer: dict) -> None:
        cat = self.catalog(flake)
        if (NAMESPACE,) not in cat.list_namespaces():
            cat.create_namespace(NAMESPACE)
        props = {"write.parquet.compression-codec": "zstd",
                 "write.parquet.compression-level": str(writer.get("compression_level") or 1),
                 "write.parquet.row-group-limit": str(writer.get("row_group_rows") or 65536)}
        if writer.get("target_memory_bytes"):
            # pyiceberg bins rows by their Arrow (in-memory) size: the source's largest file,
            # uncompressed, gives files of about the source's size
            props["write.target-file-size-bytes"] = str(writer["target_memory_bytes"])
        tbl = cat.create_table(f"{NAMESPACE}.{table}", schema=schema, properties=props)
        with tbl.update_spec() as spec:
            for col in partition_by:
                spec.add_identity(col)
        pending: list[pa.RecordBatch] = []
        rows = 0
        with tbl.transaction() as tx:
            for b in batches:
                pending.append(b)
                rows += b.num_rows
                if rows >= APPEND_ROWS:
                    tx.append(pa.Table.from_batches(pending, schema))
                    pending, rows = [], 0
            if pending:
                tx.append(pa.Table.from_batches(pending, schema))

    def scan(self, flake: FormatLake, table: str,
             columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        scan = self._table(flake, table).scan(selected_fields=tuple(columns or ("*",)))
        yield from scan.to_arrow_batch_reader()

    def row_count(self, flake: FormatLake, table: str) -> int:
        snap = self._table(flake, table).current_snapshot()
        return int((snap.summary or {}).get("total-records", 0) or 0) if snap else 0

    def data_files(self, flake: FormatLake, table: str) -> list[str]:
        tasks = list(self._table(flake, table).scan().plan_files())
        if any(t.delete_files for t in tasks):
            raise NotImplementedError("this Iceberg table has delete files; voicescrub's "
                                      "pyiceberg strategy never writes any")
        return [_path(t.file.file_path) for t in tasks]

    def duckdb_source(self, flake: FormatLake, con, table: str) -> str:  # noqa: ANN001
        files = self.data_files(flake, table)
        if not files:
            name = f"__iceberg_{table}"
            con.register(name, self._table(flake, table).schema().as_arrow().empty_table())
            return name
        quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        return f"read_parquet([{quoted}], hive_partitioning = false)"

    def table_dir(self, flake: FormatLake, table: str) -> Path | None:
        return _local_path(self._table(flake, table).location())

    def delete(self, flake: FormatLake, table: str, column: str,
               keys: pa.Array) -> StepResult:
        from pyiceberg.expressions import In

        t0 = time.perf_counter()
        tbl = self._table(flake, table)
        before = set(self.data_files(flake, table))
        snap0 = tbl.current_snapshot()
        values = keys.to_pylist()
        res = StepResult()
        if values:
            tbl.delete(In(column, values))
        tbl = self._table(flake, table)
        after = set(self.data_files(flake, table))
        res.files_removed = sorted(before - after)
        res.files_added = sorted(after - before)
        for s in tbl.snapshots():
            if snap0 is None or s.sequence_number > snap0.sequence_number:
                # copy-on-write: the old files' rows out, the kept ones back in
                summary = s.summary or {}
                res.rows_deleted += int(summary.get("deleted-records", 0) or 0) - int(
                    summary.get("added-records", 0) or 0)
        res.extra["data_files_before"] = len(before)
        res.seconds = time.perf_counter() - t0
        return res

    def purge(self, flake: FormatLake, table: str) -> StepResult:
        t0 = time.perf_counter()
        tbl = self._table(flake, table)
        res = StepResult()
        if tbl.current_snapshot() is not None and _has_deleted_entries(tbl):
            tbl.append(tbl.schema().as_arrow().empty_table())
            tbl = self._table(flake, table)
            res.extra["empty_append"] = True
        current = tbl.current_snapshot()
        old = [s.snapshot_id for s in tbl.snapshots()
               if current is None or s.snapshot_id != current.snapshot_id]
        if old:
            tbl.maintenance.expire_snapshots().by_ids(old).commit()
            tbl = self._table(flake, table)
        res.extra["snapshots_expired"] = len(old)
        keep = _referenced(tbl)
        location = Path(_path(tbl.location()))
        # the deletion below must never leave the lake, whatever the table was loaded from
        check_locations(flake, [tbl.location()])
        for p in sorted(location.rglob("*")):
            if p.is_file() and p.as_posix() not in keep:
                size = p.stat().st_size
                p.unlink()
                res.bytes_deleted_from_disk += size
                if p.suffix == ".parquet":
                    res.files_deleted_from_disk += 1
                else:
                    res.metadata_files_deleted += 1
        res.extra["deleted_entries_left"] = _has_deleted_entries(tbl)
        res.seconds = time.perf_counter() - t0
        return res


def _has_deleted_entries(tbl) -> bool:  # noqa: ANN001
    snap = tbl.current_snapshot()
    return snap is not None and any(m.deleted_files_count for m in snap.manifests(tbl.io))


def _referenced(tbl) -> set[str]:  # noqa: ANN001
    """Every file the current metadata needs: itself, the current snapshot's manifest list,
    its manifests and their live files."""
    keep = {_path(tbl.metadata_location)}
    snap = tbl.current_snapshot()
    if snap is not None:
        keep.add(_path(snap.manifest_list))
        for m in snap.manifests(tbl.io):
            keep.add(_path(m.manifest_path))
            for e in m.fetch_manifest_entry(tbl.io, discard_deleted=True):
                keep.add(_path(e.data_file.file_path))
    return keep


FORMAT = Iceberg
