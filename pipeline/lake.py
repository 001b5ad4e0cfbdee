"""Access to a lake on disk: its manifest, its data files, their partitions and writer settings."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from generators.lake import MANIFEST, write_manifest
from generators.writer import BLOOM_FPP, LOCAL_FS
from pipeline import thrift_compact as thrift
from pipeline.lineage import VOICE_LAKE, Lineage, LineageError
from pipeline.lineage import load as load_lineage

SCRUB_DIR = "_scrub"


class LakeError(ValueError):
    """A lake that cannot be scrubbed as it stands: reported before anything is touched."""


@dataclass(frozen=True)
class DataFile:
    table: str
    path: str  # relative to the lake root, '/' separated
    rows: int
    bytes: int
    partition: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def region(self) -> str:
        return self.partition.get("region", "")

    @property
    def origin(self) -> str:
        return self.partition.get("origin", self.region)


def partition_of(rel: str) -> dict[str, str]:
    """Hive partition values of a relative path: 'a=1/b=2/f.parquet' -> {a: 1, b: 2}."""
    return dict(p.split("=", 1) for p in rel.split("/")[:-1] if "=" in p)


class Lake:
    def __init__(self, root: Path, lineage: Lineage, manifest: dict | None) -> None:
        self.root = Path(root)
        self.lineage = lineage
        self.manifest = manifest

    @classmethod
    def open(cls, root: Path, lineage_file: Path | None = None) -> Lake:
        root = Path(root)
        if not root.is_dir():
            raise LakeError(f"lake {root} does not exist or is not a directory")
        manifest = read_lake_manifest(root) if (root / MANIFEST).exists() else None
        if lineage_file is not None:
            try:
                lineage = load_lineage(lineage_file)
            except LineageError as e:
                raise LakeError(str(e)) from None
        elif manifest is not None:
            lineage = VOICE_LAKE
        else:
            raise LakeError(f"{root} has neither {MANIFEST} nor a --lineage spec: "
                            "don't know which tables hold the customers")
        return cls(root, lineage, manifest)

    def reload(self) -> None:
        """Read the manifest again (a job that has just taken the lake's lock must not act on
        one read before another job changed it)."""
        if (self.root / MANIFEST).exists():
            self.manifest = read_lake_manifest(self.root)

    @property
    def layout(self) -> str | None:
        return self.manifest.get("layout") if self.manifest else None

    @property
    def n_buckets(self) -> int | None:
        b = (self.manifest or {}).get("buckets")
        return b["count"] if b else None

    def tables(self) -> list[str]:
        return self.lineage.tables

    def files(self, table: str) -> list[DataFile]:
        """Data files of a table: the manifest's list, or what is on disk without one."""
        if self.manifest is not None:
            entry = self.manifest["tables"].get(table)
            if entry is None:
                return []
            return [DataFile(table, f["path"], f["rows"], f["bytes"], partition_of(f["path"]))
                    for f in entry["files"]]
        out = []
        for p in sorted((self.root / table).rglob("*.parquet")):
            rel = p.relative_to(self.root).as_posix()
            out.append(DataFile(table, rel, pq.ParquetFile(p).metadata.num_rows,
                                p.stat().st_size, partition_of(rel)))
        return out

    def fingerprint(self) -> str:
        """What the lake holds, in one digest: its manifest (every file's rows and bytes), or
        for a lake without one, the path, size and mtime of every data file."""
        h = hashlib.sha256()
        if (self.root / MANIFEST).exists():
            h.update((self.root / MANIFEST).read_bytes())
        else:
            for table in self.tables():
                for p in sorted((self.root / table).rglob("*.parquet")):
                    st = p.stat()
                    h.update(f"{p.relative_to(self.root).as_posix()}\0{st.st_size}\0"
                             f"{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def validate(self) -> None:
        """The files on disk are the manifest's: same set, same sizes, no stray data file."""
        for table in self.tables():
            if self.manifest is not None and table not in self.manifest["tables"]:
                raise LakeError(f"lineage names table {table!r}, which the manifest lacks")
            listed = {f.path: f for f in self.files(table)}
            tdir = self.root / table
            if not tdir.is_dir():
                raise LakeError(f"table {table!r} has no directory {tdir}")
            on_disk = {p.relative_to(self.root).as_posix(): p for p in tdir.rglob("*.parquet")}
            missing = sorted(set(listed) - set(on_disk))
            extra = sorted(set(on_disk) - set(listed))
            if missing:
                raise LakeError(f"{len(missing)} file(s) of the manifest are missing, "
                                f"e.g. {missing[0]}: the lake does not match {MANIFEST}")
            if extra:
                raise LakeError(f"{len(extra)} data file(s) are not in the manifest, "
                                f"e.g. {extra[0]}: the lake does not match {MANIFEST}")
            for rel, f in listed.items():
                size = on_disk[rel].stat().st_size
                if size != f.bytes:
                    raise LakeError(f"{rel} has {size} bytes, the manifest says {f.bytes}: "
                                    f"the lake does not match {MANIFEST}")

    def writer_settings(self, table: str, path: Path) -> dict:
        """Writer settings for a rewrite of `path`: the manifest's, else read off the file."""
        if self.manifest is not None and table in self.manifest["tables"]:
            return dict(self.manifest["tables"][table]["writer"])
        return settings_from_metadata(pq.ParquetFile(path).metadata, path)

    def update_manifest(self, changed: dict[str, tuple[int, int]]) -> None:
        """Record new row counts and sizes of rewritten files (path -> (rows, bytes))."""
        if self.manifest is None:
            return
        for entry in self.manifest["tables"].values():
            touched = False
            for f in entry["files"]:
                if f["path"] in changed:
                    f["rows"], f["bytes"] = changed[f["path"]]
                    touched = True
            if touched:
                primary = [f for f in entry["files"] if f["region"] == f["origin"]]
                entry["rows_by_region"] = {r: sum(f["rows"] for f in primary if f["region"] == r)
                                           for r in entry["rows_by_region"]}
                entry["rows"] = sum(entry["rows_by_region"].values())
                entry["replica_rows"] = sum(f["rows"] for f in entry["files"]
                                            if f["region"] != f["origin"])
                entry["bytes"] = sum(f["bytes"] for f in entry["files"])
        write_manifest(self.root, self.manifest)
        fsync_dir(self.root)


def settings_from_metadata(md: pq.FileMetaData, path: Path | None = None) -> dict:
    """Best reading of how a file was written, for lakes without a manifest. With the file's
    `path`, whether its pages carry CRC-32 checksums too (the footer does not say)."""
    rg0 = md.row_group(0) if md.num_row_groups else None
    compression, dictionary = {}, []
    if rg0 is not None:
        for i in range(rg0.num_columns):
            # each leaf by its path (`aliases.list.element`): pyarrow applies a top-level
            # name to no leaf of a list or struct, which a rewrite then wrote plain and
            # uncompressed
            col = rg0.column(i)
            compression[col.path_in_schema] = col.compression.upper().replace("UNCOMPRESSED",
                                                                              "NONE")
            if any("DICTIONARY" in e for e in col.encodings):
                dictionary.append(col.path_in_schema)
    rows = max((md.row_group(i).num_rows for i in range(md.num_row_groups)), default=65536)
    return {
        "compression": compression or "ZSTD",
        "compression_level": None,
        "use_dictionary": dictionary,
        "write_statistics": True,
        "bloom_filter_options": _bloom_options(rg0, rows) if rg0 is not None else None,
        "write_page_checksum": True if path is not None and rg0 is not None
        and _first_page_has_crc(path, rg0) else None,
        "row_group_rows": rows,
    }


def _bloom_options(rg: pq.RowGroupMetaData, rows: int) -> dict | None:
    """The column chunks that carry a bloom filter (by column path, nested ones included),
    each asked for at the distinct-value count for which a writer picks the filter size the
    file has (pyarrow sizes a filter for (ndv, fpp), then rounds it up to a power of two; the
    footer keeps neither). A filter whose length the footer does not give (older writers) is
    asked for at the row-group size."""
    out = {}
    for i in range(rg.num_columns):
        cc = rg.column(i)
        if not cc.bloom_filter_offset:
            continue
        ndv = float(rows)
        if cc.bloom_filter_length:
            bits = 8 * (1 << (int(cc.bloom_filter_length).bit_length() - 1))  # no header
            # 3/4 of the bitset: rounded up to a power of two, it is the file's size again
            ndv = 0.75 * bits * -math.log(1 - BLOOM_FPP ** (1 / 8)) / 8
        out[cc.path_in_schema] = {"ndv": max(1, int(ndv)), "fpp": BLOOM_FPP}
    return out or None


def _first_page_has_crc(path: Path, rg: pq.RowGroupMetaData) -> bool:
    """Whether the first page of the row group's first column chunk has a CRC field: a
    writer that checksums pages does so for every page (Thrift compact `PageHeader`: i32
    fields 1-3, then the optional i32 `crc`, field 4)."""
    cc = rg.column(0)
    off = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    if off is None:
        return False
    with open(path, "rb") as fh:
        fh.seek(off)
        buf = fh.read(64)
    pos = last = 0
    try:
        while True:
            fid, typ, pos = thrift.field(buf, pos, last)
            if typ == thrift.STOP or fid > 4 or typ != thrift.I32:
                return False
            if fid == 4:
                return True
            _, pos = thrift.varint(buf, pos, 5)
            last = fid
    except thrift.CompactError:
        return False


def read_lake_manifest(root: Path) -> dict:
    """`_lake.json`, checked to have the shape every command reads (a file written over it,
    say a receipt or a plan, is named as such instead of failing later with a KeyError)."""
    path = root / MANIFEST
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LakeError(f"{path} is not valid JSON: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LakeError(f"{path} cannot be read: {e}") from None
    tables = m.get("tables") if isinstance(m, dict) else None
    problem = None
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        problem = "no table list (\"tables\")"
    elif "format" not in m:  # a Parquet lake's manifest lists every file
        for name, t in tables.items():
            files = t.get("files")
            if not isinstance(files, list) or not all(
                    isinstance(f, dict) and {"path", "rows", "bytes"} <= f.keys() for f in files):
                problem = f"table {name!r} has no file list with path, rows and bytes"
                break
    if problem:
        raise LakeError(f"{path} is not a voicescrub manifest: {problem} (was it written "
                        "over? `voicescrub generate` or `convert` writes it)")
    return m


def open_parquet(path: Path | str) -> pq.ParquetFile:
    """A local Parquet file, opened without pyarrow probing what the path is (a stat and URI
    parsing per open, which a scrub does a few times per file), and read without pre-buffering:
    pre-buffering coalesces reads for high-latency stores, but on a local file it only hands
    each read to Arrow's I/O thread and waits for it (a scrub was 5-6 % slower with it).
    Pages that carry a CRC-32 (`generate --page-checksums`) are verified: a damaged page is
    then an error, not values rewritten into a new file with a fresh, valid checksum."""
    return pq.ParquetFile(str(path), filesystem=LOCAL_FS, pre_buffer=False,
                          page_checksum_verification=True)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (for a directory: its entries, e.g. a rename)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path
