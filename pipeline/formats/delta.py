"""Delta Lake through delta-rs (package `deltalake`): one Delta table per lake table.

Logical step: DELETE. delta-rs writes no deletion vectors: every data file holding a deleted
row is rewritten without it (copy-on-write) and the old file is only *removed from the log*;
its bytes stay on disk. The predicate form matters: never an OR chain (it overflows delta-rs's
planner, delta-rs #2798); up to `IN_LIST_MAX` keys `DELETE WHERE k IN (...)`; past it a MERGE
of the key table `WHEN MATCHED DELETE` (a hash join). `python -m bench.format_probes` on the
sf-0.1 actions table, 8,842 recording ids: IN list 5.4 s, MERGE 2.2 s, the same 18,424 rows
deleted; and a MERGE's commit names no id, where an IN list's predicate stays in the log until
the purge.

Physical step: the old files go with `vacuum` at zero retention (which the table must allow:
the retention properties are set to zero first, one commit). The log itself still holds the
erased values: every `add` action carries min/max statistics of its file, and a DELETE's
commitInfo holds its predicate, ids included. So the purge writes a checkpoint (the live files'
actions only) and `cleanup_metadata` deletes every commit before it, which the zero log
retention allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pyarrow as pa

from pipeline.formats.base import FormatLake, StepResult, TableFormat

IN_LIST_MAX = 1_000  # keys in an IN-list DELETE; more go through MERGE … WHEN MATCHED DELETE
ZERO_RETENTION = {"delta.logRetentionDuration": "interval 0 seconds",
                  "delta.deletedFileRetentionDuration": "interval 0 seconds"}


def _literal(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return str(int(v))


def _uri_path(uri: str) -> str:
    """A local path from delta-rs's file URI (percent-encoded: a space is %20)."""
    return url2pathname(urlparse(uri).path) if "://" in uri else uri


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Delta(TableFormat):
    name = "delta"
    engine = "deltalake"
    description = "Delta Lake (delta-rs): DELETE rewrites files; vacuum + checkpoint + log cleanup"
    metadata_dirs = ("_delta_log",)

    def path(self, flake: FormatLake, table: str) -> Path:
        return flake.root / table

    def table_dir(self, flake: FormatLake, table: str) -> Path:
        return self.path(flake, table)

    def _table(self, flake: FormatLake, table: str):  # noqa: ANN202
        from deltalake import DeltaTable

        return DeltaTable(str(self.path(flake, table)))

    def _writer(self, writer: dict):  # noqa: ANN202
        from deltalake import WriterProperties

        return WriterProperties(compression="ZSTD",
                                compression_level=writer.get("compression_level") or 1,
                                max_row_group_size=writer.get("row_group_rows") or 65536)

    def create_table(self, flake: FormatLake, table: str, schema: pa.Schema,
                     partition_by: list[str], batches: Iterator[pa.RecordBatch],
                     writer: dict) -> None:
        from deltalake import write_deltalake

        reader = pa.RecordBatchReader.from_batches(schema, batches)
        write_deltalake(str(self.path(flake, table)), reader, partition_by=partition_by,
                        mode="error", writer_properties=self._writer(writer),
                        target_file_size=writer.get("target_file_bytes"))

    def scan(self, flake: FormatLake, table: str,
             columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        yield from self._table(flake, table).to_pyarrow_dataset().to_batches(columns=columns)

    def row_count(self, flake: FormatLake, table: str) -> int:
        import pyarrow.compute as pc

        actions = pa.table(self._table(flake, table).get_add_actions(flatten=True))
        return int(pc.sum(actions["num_records"]).as_py() or 0) if actions.num_rows else 0

    def data_files(self, flake: FormatLake, table: str) -> list[str]:
        return [_uri_path(u) for u in self._table(flake, table).file_uris()]

    def duckdb_source(self, flake: FormatLake, con, table: str) -> str:  # noqa: ANN001
        # DuckDB reads the snapshot's files itself: through a pyarrow dataset, a filter DuckDB
        # pushes down fails on the files a DELETE rewrote, which delta-rs writes with
        # string_view columns (Arrow 26 cannot compare them with the table's string type)
        dt = self._table(flake, table)
        schema = dt.to_pyarrow_dataset().schema
        actions = pa.table(dt.get_add_actions(flatten=True))
        if not actions.num_rows:
            name = f"__delta_{table}"
            con.register(name, schema.empty_table())
            return name
        root = self.path(flake, table)
        parts = [c.removeprefix("partition.") for c in actions.column_names
                 if c.startswith("partition.")]
        # the partition values from the log, never from the path: a parent directory named
        # like `region=x` would otherwise stand in for every row's value
        groups: dict[tuple, list[str]] = {}
        for row in actions.select(["path", *(f"partition.{c}" for c in parts)]).to_pylist():
            values = tuple(row[f"partition.{c}"] for c in parts)
            path = row["path"]  # a URI, relative to the table (percent-encoded)
            groups.setdefault(values, []).append(
                _uri_path(path) if "://" in path else str(root / unquote(path)))
        cols = ", ".join(_ident(n) for n in schema.names)
        selects = []
        for values, files in groups.items():
            listing = ", ".join(_literal(f) for f in files)
            consts = "".join(f", {_literal(v)} AS {_ident(c)}" for c, v in zip(parts, values,
                                                                              strict=True))
            selects.append(f"SELECT *{consts} FROM read_parquet([{listing}], "
                           "hive_partitioning = false, union_by_name = true)")
        return f"(SELECT {cols} FROM ({' UNION ALL BY NAME '.join(selects)}))"

    def _actions(self, flake: FormatLake, table: str, first: int, last: int) -> tuple[list, list]:
        """Paths added and removed by the commits first..last (inclusive)."""
        added, removed = [], []
        log = self.path(flake, table) / "_delta_log"
        root = self.path(flake, table)
        for v in range(first, last + 1):
            for line in (log / f"{v:020d}.json").read_text().splitlines():
                action = json.loads(line)
                if "add" in action:
                    added.append(str(root / action["add"]["path"]))
                elif "remove" in action:
                    removed.append(str(root / action["remove"]["path"]))
        return added, removed

    def delete(self, flake: FormatLake, table: str, column: str,
               keys: pa.Array) -> StepResult:
        t0 = time.perf_counter()
        dt = self._table(flake, table)
        v0 = dt.version()
        res = StepResult()
        if len(keys) == 0:
            pass
        elif len(keys) <= IN_LIST_MAX:
            m = dt.delete(f"{column} IN ({', '.join(map(_literal, keys.to_pylist()))})")
            res.rows_deleted = m.get("num_deleted_rows", 0)
            res.extra["predicate"] = f"DELETE WHERE {column} IN ({len(keys)} literals)"
        else:
            m = dt.merge(source=pa.table({"k": keys}), predicate=f"t.{column} = s.k",
                         source_alias="s", target_alias="t").when_matched_delete().execute()
            res.rows_deleted = m.get("num_target_rows_deleted", 0)
            res.extra["predicate"] = f"MERGE ON t.{column} = s.k WHEN MATCHED DELETE"
        v1 = dt.version()
        if v1 > v0:
            added, removed = self._actions(flake, table, v0 + 1, v1)
            # a file written by one IN chunk and rewritten by the next is neither
            res.files_added = sorted(set(added) - set(removed))
            res.files_removed = sorted(set(removed) - set(added))
        res.extra["commits"] = v1 - v0
        res.seconds = time.perf_counter() - t0
        return res

    def purge(self, flake: FormatLake, table: str) -> StepResult:
        t0 = time.perf_counter()
        root = self.path(flake, table)
        dt = self._table(flake, table)
        res = StepResult()
        config = dt.metadata().configuration
        if any(config.get(k) != v for k, v in ZERO_RETENTION.items()):
            dt.alter.set_table_properties(ZERO_RETENTION)
        before = _sizes(root)
        dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
        dt.create_checkpoint()
        dt.cleanup_metadata()
        after = _sizes(root)
        gone = set(before) - set(after)
        res.files_deleted_from_disk = sum(1 for p in gone if "/_delta_log/" not in p)
        res.metadata_files_deleted = sum(1 for p in gone if "/_delta_log/" in p)
        res.bytes_deleted_from_disk = sum(before[p] for p in gone)
        res.seconds = time.perf_counter() - t0
        return res


def _sizes(root: Path) -> dict[str, int]:
    return {p.as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}


FORMAT = Delta
