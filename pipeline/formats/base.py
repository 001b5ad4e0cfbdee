"""What the three table formats share: the format lake, its descriptor, and the interface.

A format lake is a lake root holding one table format's files only (Delta tables, an Iceberg
warehouse and its SQL catalog, or a DuckLake catalog and data path) plus `_lake.json`, which
names the format, keeps the source lake's description (seed, sf, layout, regions, row counts,
keys) and the lineage, so the scrub, the audit and the views work on it as on a Parquet lake.

Every table has the source's columns (dictionary types decoded: none of the formats keeps an
Arrow dictionary type), its partition columns `region` (and `origin` for facts, as in the
source's paths) and, for facts, the layout's path column (`date` or `bucket`) as a plain column.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from generators.lake import MANIFEST
from pipeline.lineage import VOICE_LAKE, Lineage, from_json

FORMAT_VERSION = 1


@dataclass
class FormatLake:
    root: Path
    manifest: dict
    lineage: Lineage = VOICE_LAKE

    @classmethod
    def open(cls, root: Path) -> FormatLake:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
        lineage = from_json(manifest["lineage"]) if "lineage" in manifest else VOICE_LAKE
        flake = cls(Path(root), manifest, lineage)
        flake.check_in_place()
        return flake

    def check_in_place(self) -> None:
        """Refuse, before anything reads or writes it, a lake its format cannot use where it
        is (a copied Iceberg lake still names the original's files)."""
        from pipeline.formats import available

        fmt = available().get(self.manifest.get("format"))
        if fmt is not None:
            fmt().check_in_place(self)

    @property
    def format(self) -> str:
        return self.manifest["format"]

    def tables(self) -> list[str]:
        return self.lineage.tables

    def table(self, name: str) -> dict:
        return self.manifest["tables"][name]

    def write_manifest(self) -> None:
        from generators.lake import write_manifest

        write_manifest(self.root, self.manifest)


@dataclass
class StepResult:
    """What one step (a delete, or a purge) did to one table."""
    rows_deleted: int = 0
    files_removed: list[str] = field(default_factory=list)  # data files out of the snapshot
    files_added: list[str] = field(default_factory=list)  # data files into it (rewrites)
    delete_files_added: int = 0
    files_deleted_from_disk: int = 0
    metadata_files_deleted: int = 0
    bytes_deleted_from_disk: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"rows_deleted": self.rows_deleted, "files_removed": len(self.files_removed),
                "files_added": len(self.files_added),
                "delete_files_added": self.delete_files_added,
                "files_deleted_from_disk": self.files_deleted_from_disk,
                "metadata_files_deleted": self.metadata_files_deleted,
                "bytes_deleted_from_disk": self.bytes_deleted_from_disk,
                "seconds": round(self.seconds, 4), **self.extra}


class TableFormat(ABC):
    """One table format: how to build its tables, read them, delete rows, purge old bytes."""

    name: ClassVar[str]
    engine: ClassVar[str]  # the Python package whose version the receipt records
    description: ClassVar[str]
    # directories (by name) under table_dir that hold the format's metadata, never data files
    metadata_dirs: ClassVar[tuple[str, ...]] = ()
    # whether the DELETE rewrites the files holding erased rows (else it writes delete files,
    # and the purge rewrites them)
    delete_rewrites: ClassVar[bool] = True

    # --- conversion -------------------------------------------------------------------------
    @abstractmethod
    def create_table(self, flake: FormatLake, table: str, schema: pa.Schema,
                     partition_by: list[str], batches: Iterator[pa.RecordBatch],
                     writer: dict) -> None:
        """Create `table` and load every batch into it (one or a few commits)."""

    def finish_conversion(self, flake: FormatLake) -> None:  # noqa: B027 - optional hook
        """Anything the format does once all tables are loaded."""

    def check_in_place(self, flake: FormatLake) -> None:  # noqa: B027 - optional hook
        """Raise a LakeError if the lake's metadata names files outside its root (a copied or
        moved lake whose format records absolute paths): nothing may be read or written."""

    # --- reading the current snapshot ---------------------------------------------------------
    @abstractmethod
    def scan(self, flake: FormatLake, table: str,
             columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The table's rows as the current snapshot shows them."""

    @abstractmethod
    def row_count(self, flake: FormatLake, table: str) -> int:
        """Rows in the current snapshot, from the format's own metadata where it has them."""

    @abstractmethod
    def data_files(self, flake: FormatLake, table: str) -> list[str]:
        """Absolute paths of the data files the current snapshot reads."""

    def live_files(self, flake: FormatLake, table: str) -> list[str]:
        """Every file the current snapshot reads: its data files, and delete files where the
        format writes them."""
        return self.data_files(flake, table)

    def table_dir(self, flake: FormatLake, table: str) -> Path | None:
        """The directory under which the table's data files are written (None: unknown, and
        a failed write's files are left to the purge)."""
        return None

    @abstractmethod
    def duckdb_source(self, flake: FormatLake, con, table: str) -> str:  # noqa: ANN001
        """A relation (SQL) over the table's current snapshot in DuckDB connection `con`."""

    # --- erasure ------------------------------------------------------------------------------
    @abstractmethod
    def delete(self, flake: FormatLake, table: str, column: str,
               keys: pa.Array) -> StepResult:
        """The format's DELETE of the rows whose `column` holds one of `keys` (logical)."""

    @abstractmethod
    def purge(self, flake: FormatLake, table: str) -> StepResult:
        """Everything it takes until no byte of deleted rows is left under the table."""

    def files_to_purge(self, flake: FormatLake, table: str) -> list[str]:
        """Data files the purge rewrites (rows deleted earlier left in them): it holds the old
        and the new copy until it ends. None for a purge that only deletes files."""
        return []

    def snapshot_id(self, flake: FormatLake) -> int | None:
        """The current snapshot, for formats whose purge rewrites files (see rows_of_files)."""
        return None

    def rows_of_files(self, flake: FormatLake, table: str, files: list[str],
                      snapshot: int | None = None) -> Iterator[pa.RecordBatch]:
        """The visible rows of some data files, at `snapshot` (default: the current one)."""
        raise NotImplementedError(f"{self.name} does not rewrite files in its purge")

    def release(self, flake: FormatLake) -> None:  # noqa: B027 - optional hook
        """Let go of anything held open on the lake (a catalog another reader must open)."""

    def finish_purge(self, flake: FormatLake) -> dict:
        """Once every table is purged (e.g. a catalog shared by the tables)."""
        return {}
