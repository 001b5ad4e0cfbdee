"""DuckLake through DuckDB's `ducklake` extension (loaded from its PyPI package, no network):
a DuckDB catalog file and the data path, both under the lake root.

Logical step: DELETE ... WHERE column IN (keys). DuckLake writes *delete files* (row positions)
beside the untouched data files: the erased rows are hidden from queries, every byte of them
stays in the data files.

Physical step: `ducklake_rewrite_data_files` with a zero delete threshold (every file with a
deleted row is rewritten without it), `ducklake_expire_snapshots` up to now, then
`ducklake_cleanup_old_files` and `ducklake_delete_orphaned_files` for everything no snapshot
needs. Then the catalog itself: DuckDB keeps deleted rows of the catalog's tables (the old
files' column statistics: min/max ids, emails) in free blocks of the database file, so the purge
copies the catalog into a fresh file (`COPY FROM DATABASE`) and swaps it in atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.formats.base import FormatLake, StepResult, TableFormat
from pipeline.lake import fsync_dir, fsync_path

ALIAS = "lake"
_SHARED: dict[Path, duckdb.DuckDBPyConnection] = {}  # lake root -> attached connection


def load_ducklake(con: duckdb.DuckDBPyConnection) -> None:
    from pipeline.duckdb_ext import load_extension

    load_extension(con, "ducklake")


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _kib(n: int | None) -> str | None:
    return f"{-(-n // 1024)}KiB" if n else None


class DuckLake(TableFormat):
    name = "ducklake"
    engine = "duckdb"
    description = ("DuckLake (DuckDB extension): DELETE writes delete files; rewrite + expire + "
                   "cleanup + catalog compaction")
    delete_rewrites = False

    def base(self, flake: FormatLake) -> Path:
        return flake.root / "ducklake"

    def catalog_path(self, flake: FormatLake) -> Path:
        return self.base(flake) / "catalog.ducklake"

    def connect(self, flake: FormatLake, read_only: bool = False,
                con: duckdb.DuckDBPyConnection | None = None,
                alias: str = ALIAS) -> duckdb.DuckDBPyConnection:
        base = self.base(flake)
        (base / "data").mkdir(parents=True, exist_ok=True)
        con = con or duckdb.connect()
        load_ducklake(con)
        # the catalog records an absolute data path; a copied or moved lake overrides it (file
        # paths in the catalog are relative to it)
        opts = f"DATA_PATH {_q(str(base / 'data'))}, OVERRIDE_DATA_PATH true" + (
            ", READ_ONLY" if read_only else "")
        con.execute(f"ATTACH {_q('ducklake:' + str(self.catalog_path(flake)))} AS {alias} "
                    f"({opts})")
        return con

    def session(self, flake: FormatLake) -> duckdb.DuckDBPyConnection:
        """A cursor on this process's connection to the lake's catalog: attaching (and
        loading the extension) once per process, not once per call."""
        key = flake.root.resolve()
        con = _SHARED.get(key)
        if con is None:
            con = _SHARED[key] = self.connect(flake)
        return con.cursor()

    def release(self, flake: FormatLake) -> None:
        con = _SHARED.pop(flake.root.resolve(), None)
        if con is not None:
            con.close()

    def create_table(self, flake: FormatLake, table: str, schema: pa.Schema,
                     partition_by: list[str], batches: Iterator[pa.RecordBatch],
                     writer: dict) -> None:
        con = self.session(flake)
        try:
            for opt, value in (("parquet_compression", "zstd"),
                               ("parquet_compression_level", writer.get("compression_level") or 1),
                               ("parquet_row_group_size", writer.get("row_group_rows") or 65536),
                               ("target_file_size", _kib(writer.get("target_file_bytes")))):
                if value is not None:
                    con.execute(f"CALL {ALIAS}.set_option({_q(opt)}, {_q(str(value))})")
            reader = pa.RecordBatchReader.from_batches(schema, batches)
            con.register("__src", reader)
            con.execute(f"CREATE TABLE {ALIAS}.{table} AS SELECT * FROM __src LIMIT 0")
            con.execute(f"ALTER TABLE {ALIAS}.{table} SET PARTITIONED BY "
                        f"({', '.join(partition_by)})")
            con.execute(f"INSERT INTO {ALIAS}.{table} SELECT * FROM __src")
        finally:
            con.close()

    def scan(self, flake: FormatLake, table: str,
             columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        con = self.session(flake)
        try:
            cols = ", ".join(columns) if columns else "*"
            yield from con.execute(f"SELECT {cols} FROM {ALIAS}.{table}").to_arrow_reader(
                1 << 17)
        finally:
            con.close()

    def row_count(self, flake: FormatLake, table: str) -> int:
        con = self.session(flake)
        try:
            return int(con.execute(f"SELECT count(*) FROM {ALIAS}.{table}").fetchone()[0])
        finally:
            con.close()

    def data_files(self, flake: FormatLake, table: str) -> list[str]:
        return [f for f, _ in self._files(flake, table)]

    def live_files(self, flake: FormatLake, table: str) -> list[str]:
        return [f for pair in self._files(flake, table) for f in pair if f]

    def files_to_purge(self, flake: FormatLake, table: str) -> list[str]:
        # A file with deleted rows shows fewer rows than its footer holds. Not "has a delete
        # file": small deletes are inlined into the catalog (DuckLake's deletion inlining)
        # and the rewrite takes those files too. A file none of whose rows shows is dropped,
        # not rewritten.
        con = self.session(flake)
        try:
            shown = dict(con.execute(f"SELECT filename, count(*) FROM {ALIAS}.{table} "
                                     "GROUP BY ALL").fetchall())
            files = [d for d, _ in self._files(flake, table, con)]
        finally:
            con.close()
        return [f for f in files if 0 < shown.get(f, 0) < pq.read_metadata(f).num_rows]

    def table_dir(self, flake: FormatLake, table: str) -> Path:
        return self.base(flake) / "data" / "main" / table

    def _files(self, flake: FormatLake, table: str,
               con: duckdb.DuckDBPyConnection | None = None) -> list[tuple[str, str | None]]:
        own = con is None
        con = con or self.session(flake)
        try:
            return [(d, x) for d, x in con.execute(
                f"SELECT data_file, delete_file FROM ducklake_list_files({_q(ALIAS)}, "
                f"{_q(table)})").fetchall()]
        finally:
            if own:
                con.close()

    def duckdb_source(self, flake: FormatLake, con, table: str) -> str:  # noqa: ANN001
        attached = {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()")
                    .fetchall()}
        if "__ducklake" not in attached:
            self.release(flake)  # a process attaches a catalog file once
            self.connect(flake, read_only=True, con=con, alias="__ducklake")
        return f"__ducklake.{table}"

    def delete(self, flake: FormatLake, table: str, column: str,
               keys: pa.Array) -> StepResult:
        t0 = time.perf_counter()
        con = self.session(flake)
        res = StepResult()
        try:
            before = self._files(flake, table, con)
            con.register("__keys", pa.table({"k": keys}))
            n = con.execute(f"DELETE FROM {ALIAS}.{table} WHERE {column} IN "
                            f"(SELECT k FROM __keys)").fetchone()
            res.rows_deleted = int(n[0]) if n else 0
            after = self._files(flake, table, con)
        finally:
            con.close()
        old_deletes = {x for _, x in before if x}
        res.delete_files_added = len({x for _, x in after if x} - old_deletes)
        res.seconds = time.perf_counter() - t0
        return res

    def purge(self, flake: FormatLake, table: str) -> StepResult:
        t0 = time.perf_counter()
        con = self.session(flake)
        res = StepResult()
        try:
            before = {d for d, _ in self._files(flake, table, con)}
            con.execute(f"CALL ducklake_rewrite_data_files({_q(ALIAS)}, {_q(table)}, "
                        f"delete_threshold => 0)").fetchall()
            after = {d for d, _ in self._files(flake, table, con)}
        finally:
            con.close()
        res.files_removed = sorted(before - after)
        res.files_added = sorted(after - before)
        res.seconds = time.perf_counter() - t0
        return res

    def snapshot_id(self, flake: FormatLake) -> int | None:
        con = self.session(flake)
        try:
            return int(con.execute(f"SELECT id FROM ducklake_current_snapshot({_q(ALIAS)})")
                       .fetchone()[0])
        finally:
            con.close()

    def rows_of_files(self, flake: FormatLake, table: str, files: list[str],
                      snapshot: int | None = None) -> Iterator[pa.RecordBatch]:
        con = self.session(flake)
        try:
            con.register("__files", pa.table({"f": pa.array(files, pa.string())}))
            at = f" AT (VERSION => {int(snapshot)})" if snapshot is not None else ""
            yield from con.execute(
                f"SELECT * FROM {ALIAS}.{table}{at} WHERE filename IN (SELECT f FROM __files)"
            ).to_arrow_reader(1 << 17)
        finally:
            con.close()

    def finish_purge(self, flake: FormatLake) -> dict:
        t0 = time.perf_counter()
        data = self.base(flake) / "data"
        before = {p: p.stat().st_size for p in data.rglob("*") if p.is_file()}
        con = self.session(flake)
        try:
            expired = len(con.execute(f"CALL ducklake_expire_snapshots({_q(ALIAS)}, "
                                      "older_than => now())").fetchall())
            con.execute(f"CALL ducklake_cleanup_old_files({_q(ALIAS)}, cleanup_all => true)"
                        ).fetchall()
            con.execute(f"CALL ducklake_delete_orphaned_files({_q(ALIAS)}, "
                        "cleanup_all => true)").fetchall()
        finally:
            con.close()
        gone = [p for p in before if not p.exists()]
        t1 = time.perf_counter()
        catalog_before = self.catalog_path(flake).stat().st_size
        self.compact_catalog(flake)
        return {"snapshots_expired": expired, "files_deleted_from_disk": len(gone),
                "bytes_deleted_from_disk": sum(before[p] for p in gone),
                "catalog_bytes_before": catalog_before,
                "catalog_bytes_after": self.catalog_path(flake).stat().st_size,
                "cleanup_seconds": round(t1 - t0, 4),
                "catalog_compaction_seconds": round(time.perf_counter() - t1, 4)}

    def compact_catalog(self, flake: FormatLake) -> None:
        """Copy the catalog database into a fresh file and swap it in: the old file's free
        blocks still hold deleted catalog rows (statistics of the erased rows' files)."""
        self.release(flake)  # the catalog file is about to be replaced
        path = self.catalog_path(flake)
        fresh = path.with_name(path.name + ".compact")
        fresh.unlink(missing_ok=True)
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {_q(str(path))} AS old (READ_ONLY)")
            con.execute(f"ATTACH {_q(str(fresh))} AS fresh")
            con.execute("COPY FROM DATABASE old TO fresh")
            con.execute("DETACH fresh")
            con.execute("DETACH old")
        finally:
            con.close()
        fsync_path(fresh)
        os.replace(fresh, path)
        wal = path.with_name(path.name + ".wal")
        wal.unlink(missing_ok=True)
        fsync_dir(path.parent)


FORMAT = DuckLake
