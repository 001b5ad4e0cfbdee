"""Format lakes for the table-format tests: each format's rows and checksums, fresh copies
of a converted lake to erase from, a request."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.formats import FormatLake, available, get
from pipeline.intake import ErasureRequest
from pipeline.plan import match
from pipeline.rowhash import row_checksum
from pipeline.strategies.base import add64

FORMATS = list(available())


def plain_table(b: pa.RecordBatch) -> pa.Table:
    t = pa.Table.from_batches([b])
    cols = []
    for c in t.columns:
        typ = c.type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if pa.types.is_string_view(typ):
            typ = pa.string()
        if pa.types.is_binary_view(typ):
            typ = pa.binary()
        cols.append(c.cast(typ))
    t = pa.table(cols, names=t.column_names)
    return t.select(sorted(t.column_names))


def kept_checksums(flake: FormatLake, erase: dict[str, pa.Array] | None) -> dict[str, tuple]:
    """Per table: (rows, checksum) of the rows the snapshot shows, minus rows holding a key."""
    fmt = get(flake.format)
    out = {}
    for table in flake.tables():
        rows, total = 0, 0
        for b in fmt.scan(flake, table):
            t = plain_table(b)
            if erase is not None:
                for rule in flake.lineage.rules_for(table):
                    t = t.filter(pc.invert(match(t[rule.column], erase[rule.key])))
            rows += t.num_rows
            total = add64(total, row_checksum(t))
        out[table] = (rows, total)
    return out


def erasure_request(ids: list[int]) -> ErasureRequest:
    return ErasureRequest(np.unique(np.array(ids, np.int64)), dt.datetime.now(dt.UTC), "test", 0)


def fresh(fmt: str, converted: dict[str, Path], format_src: Path, dst: Path) -> FormatLake:
    """A format lake to erase from: a copy of the converted one where the format allows it
    (Delta's paths are relative, DuckLake's data path is overridden on attach). Iceberg's
    metadata and catalog hold absolute paths: its pristine copy is restored where it was
    converted (one at a time: a worker runs its tests one after the other), and
    `dst` is not used (read the lake's root from the returned lake)."""
    if fmt == "iceberg":
        work = converted["iceberg-work"]
        shutil.rmtree(work)
        shutil.copytree(converted["iceberg-pristine"], work)
        return FormatLake.open(work)
    shutil.copytree(converted[fmt], dst)
    return FormatLake.open(dst)


class EngineError(Exception):
    """How delta-rs and DuckDB report a full disk: their own type, the OS's words, no errno."""


def data_parquet_files(root: Path) -> set[Path]:
    """The lake's data files (not the job's own, under _scrub/)."""
    return {p for p in root.rglob("*.parquet") if "_scrub" not in p.relative_to(root).parts}


