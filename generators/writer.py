"""Parquet writer settings per table: chosen per column, recorded in _lake.json, reusable.

A rewrite (the scrub) opens its writer from the same settings, so a scrubbed file is encoded
like a generated one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import LocalFileSystem

from generators.config import LakeConfig
from generators.schemas import (
    COMPRESSION,
    COMPRESSION_LEVEL,
    DATA_PAGE_SIZE,
    TableSpec,
)

BLOOM_FPP = 0.01


def writer_settings(spec: TableSpec, layout: str, cfg: LakeConfig) -> dict:
    """JSON-able keyword arguments for pyarrow.parquet.ParquetWriter, plus the row-group size."""
    schema = spec.file_schema(layout)
    rg = spec.row_group_rows
    if spec.name == "audio":  # keep an audio row group near 32 MiB whatever the payload size
        rg = max(256, min(rg, (32 << 20) // cfg.audio_bytes))
    settings = {
        "compression": COMPRESSION.upper(),
        "compression_level": COMPRESSION_LEVEL,
        "uncompressed_columns": [c for c in spec.uncompressed if c in schema.names],
        "use_dictionary": [c for c in spec.dictionary if c in schema.names],
        "write_statistics": True,
        "data_page_size": DATA_PAGE_SIZE,
        "bloom_filter_options": ({c: {"ndv": rg, "fpp": BLOOM_FPP} for c in spec.bloom}
                                 if cfg.bloom_filters else None),
        "write_page_checksum": True if cfg.page_checksums else None,
        "row_group_rows": rg,
    }
    return settings


LOCAL_FS = LocalFileSystem()


def open_writer(path: Path, schema: pa.Schema, settings: dict) -> pq.ParquetWriter:
    """A ParquetWriter from recorded settings. `uncompressed_columns` expands into per-column
    codecs and levels (pyarrow refuses a level on an uncompressed column)."""
    kwargs = {k: v for k, v in settings.items()
              if k not in ("row_group_rows", "uncompressed_columns") and v is not None}
    plain = set(settings.get("uncompressed_columns") or ())
    if plain:
        codec, level = kwargs.pop("compression"), kwargs.pop("compression_level", None)
        kwargs["compression"] = {n: ("NONE" if n in plain else codec) for n in schema.names}
        if level is not None:
            kwargs["compression_level"] = {n: level for n in schema.names if n not in plain}
    # The filesystem is named so pyarrow does not probe the path first (a stat, then URI
    # parsing): a scrub opens thousands of files.
    return pq.ParquetWriter(str(path), schema, filesystem=LOCAL_FS, **kwargs)


class TableFile:
    """One Parquet file written in row groups to a temp name, renamed into place on close."""

    def __init__(self, path: Path, schema: pa.Schema, settings: dict) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.row_group_rows = settings["row_group_rows"]
        self.writer = open_writer(self.tmp, schema, settings)
        self.rows = 0
        _OPEN.add(self)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table.cast(self.schema),
                                    row_group_size=self.row_group_rows)
            self.rows += table.num_rows

    def close(self) -> dict | None:
        """Finish the file; an empty file is not kept (None)."""
        _OPEN.discard(self)
        self.writer.close()
        if not self.rows:
            self.tmp.unlink()
            return None
        os.replace(self.tmp, self.path)
        return {"rows": self.rows, "bytes": self.path.stat().st_size}

    def abort(self) -> None:
        """Drop the unfinished file. Closing its writer may fail again (a full disk): the
        writer is then closed here, not by its finalizer's traceback at exit."""
        _OPEN.discard(self)
        with contextlib.suppress(Exception):
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


_OPEN: set[TableFile] = set()  # this process's files not yet closed


def abort_open_files() -> None:
    """After a unit failed: drop the files it left open."""
    for tf in list(_OPEN):
        tf.abort()
