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
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipeline.formats.base import FormatLake, StepResult, TableFormat

NAMESPACE = "lake"
APPEND_ROWS = 1 << 20  # rows per append while converting (bounded memory)


def _path(uri: str) -> str:
    return uri.removeprefix("file://")


class Iceberg(TableFormat):
    name = "iceberg"
    engine = "pyiceberg"
    description = ("Apache Iceberg (pyiceberg, sqlite catalog): delete rewrites files; "
                   "expire snapshots + orphan removal")

    def catalog(self, flake: FormatLake):  # noqa: ANN201
        from pyiceberg.catalog.sql import SqlCatalog

        base = flake.root / "iceberg"
        base.mkdir(parents=True, exist_ok=True)
        return SqlCatalog("voicescrub", uri=f"sqlite:///{base}/catalog.db",
                          warehouse=f"file://{base}/warehouse")

    def _table(self, flake: FormatLake, table: str):  # noqa: ANN202
        return self.catalog(flake).load_table(f"{NAMESPACE}.{table}")

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
