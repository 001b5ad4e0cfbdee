"""The audit of a table-format lake (Delta, Iceberg, DuckLake).

Two questions, answered apart:
- *logically visible*: does the format's current snapshot still return a row holding one of the
  customers' keys (or, in `customers`, their email or phone)? Read through the format itself.
- *physically present*: is any byte of them left in any file under the root? Every file is
  read, whether the format references it or not: Parquet data files (old versions and delete
  files included) through their columns, every other file as raw bytes — and the formats'
  metadata decoded, because that is where erased values hide after the data files are gone:
  min/max statistics in Delta's log (JSON, and the nested `stats` strings of its Parquet
  checkpoints), lower/upper bounds in Iceberg's Avro manifests (binary, strings truncated to
  16 characters: a bound that is a prefix of an erased email counts), and DuckLake's catalog (a
  DuckDB database: file and table column statistics, inlined rows).
"""

from __future__ import annotations

import bisect
import json
import struct
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.audit import (
    POSSIBLE,
    AuditReport,
    Finding,
    Needles,
    RawNeedles,
    _merge,
    _text_findings,
    audit_any_parquet,
    audit_parquet,
    audit_raw,
    column_needles,
    is_parquet,
    journal_key_kind,
    needles_from,
    parquet_or_bytes,
    raw_counts,
    raw_needles,
    read_every_file,
    table_reader,
)
from pipeline.format_scrub import resolve_format_keys
from pipeline.formats import FormatLake, TableFormat, get
from pipeline.plan import match

PII_COLUMNS = ("email", "phone", "full_name", "street_address")
ICEBERG_TRUNCATE = 16  # pyiceberg's default metrics mode: truncate(16)


def gather_format_needles(flake: FormatLake, fmt: TableFormat,
                          customer_ids: np.ndarray) -> Needles:
    keys = resolve_format_keys(flake, fmt, customer_ids)

    def pii_of(ids: pa.Array | None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {c: [] for c in PII_COLUMNS}
        if ids is None or "customers" not in flake.manifest["tables"]:
            return out
        for b in fmt.scan(flake, "customers", ["customer_id", *PII_COLUMNS]):
            hit = b.filter(match(b.column("customer_id"), ids))
            for c in PII_COLUMNS:
                out[c] += [v for v in hit.column(c).to_pylist() if v]
        return out

    return needles_from(flake.manifest, customer_ids, keys, pii_of)


def snapshot_findings(flake: FormatLake, fmt: TableFormat, needles: Needles,
                      patterns: dict) -> list[Finding]:
    """Rows the current snapshot still returns: key columns of every table, and the
    customers table's contact columns."""
    out: list[Finding] = []
    for table in flake.manifest["tables"]:
        columns = flake.manifest["tables"][table]["columns"]
        keys = [c for c in columns if c in needles.keys]
        text = [c for c in ("email", "phone") if c in columns] if table == "customers" else []
        if not keys and not text:
            continue
        label = f"{table} (current {flake.format} snapshot)"
        for b in fmt.scan(flake, table, keys + text):
            for c in keys:
                n = pc.sum(match(b.column(c), needles.keys[c])).as_py() or 0
                if n:
                    out.append(Finding(label, c, c, n, True))
            for c in text:
                out += _text_findings(b.column(c), label, c, patterns, True)
    return _merge(out)


# --- metadata decoders -------------------------------------------------------------------------
class ValueCheck:
    """Is a decoded metadata value one of the needles? Ids exactly; emails and phones exactly
    or, for truncated bounds, as a prefix."""

    def __init__(self, needles: Needles) -> None:
        self.ints = {k: set(v.to_pylist()) for k, v in needles.keys.items()
                     if pa.types.is_integer(v.type)}
        self.strs = {k: set(v.to_pylist()) for k, v in needles.keys.items()
                     if pa.types.is_string(v.type)}
        self.text = {"email": sorted(needles.emails), "phone": sorted(needles.phones)}

    def kind(self, column: str, value: object) -> str | None:
        if value is None:
            return None
        if column in self.ints:
            try:
                return column if int(value) in self.ints[column] else None
            except (TypeError, ValueError):
                return None
        if column in self.strs:
            return column if str(value) in self.strs[column] else None
        if isinstance(value, str):
            for kind, sorted_values in self.text.items():
                if _exact_or_prefix(value, sorted_values):
                    return kind
        return None


def _exact_or_prefix(value: str, sorted_values: list[str]) -> bool:
    i = bisect.bisect_left(sorted_values, value)
    if i < len(sorted_values) and sorted_values[i] == value:
        return True
    if len(value) >= ICEBERG_TRUNCATE - 1:
        # a truncated lower bound is a prefix; a truncated upper bound is a prefix with its
        # last character incremented
        head = value[:-1]
        j = bisect.bisect_left(sorted_values, head)
        return j < len(sorted_values) and sorted_values[j].startswith(head)
    return False


def _decode_bound(typ: object, raw: bytes) -> object:
    if typ == "long" and len(raw) == 8:
        return struct.unpack("<q", raw)[0]
    if typ == "int" and len(raw) == 4:
        return struct.unpack("<i", raw)[0]
    if typ == "string":
        return raw.decode("utf-8", errors="replace")
    return None


def iceberg_manifest_findings(path: Path, rel: str, check: ValueCheck) -> list[Finding]:
    """Lower/upper bounds of every entry (live or DELETED) of an Iceberg manifest."""
    from pyiceberg.avro.file import AvroFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.manifest import (
        DEFAULT_READ_VERSION,
        MANIFEST_ENTRY_SCHEMAS,
        DataFile,
        DataFileContent,
        FileFormat,
        ManifestEntry,
        ManifestEntryStatus,
    )

    try:
        with AvroFile[ManifestEntry](
            PyArrowFileIO().new_input(str(path)), MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION],
            read_types={-1: ManifestEntry, 2: DataFile},
            read_enums={0: ManifestEntryStatus, 101: FileFormat, 134: DataFileContent},
        ) as reader:
            schema = json.loads(reader.header.meta["schema"])
            entries = list(reader)
    except Exception:  # noqa: BLE001 - a manifest list, or not Iceberg at all: raw bytes only
        return []
    fields = {f["id"]: (f["name"], f["type"]) for f in schema.get("fields", [])}
    counts: dict[tuple[str, str], int] = {}
    for e in entries:
        for bounds in (e.data_file.lower_bounds, e.data_file.upper_bounds):
            for fid, raw in (bounds or {}).items():
                name, typ = fields.get(fid, (None, None))
                if name is None:
                    continue
                kind = check.kind(name, _decode_bound(typ, raw))
                if kind:
                    counts[(name, kind)] = counts.get((name, kind), 0) + 1
    return [Finding(rel, f"{c} (bounds)", k, n, False) for (c, k), n in counts.items()]


def is_duckdb(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
        return head[8:12] == b"DUCK"
    except OSError:
        return False


def ducklake_catalog_findings(path: Path, rel: str, check: ValueCheck) -> list[Finding]:
    """Column statistics (per file and per table) and inlined rows of a DuckLake catalog."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS cat (READ_ONLY)")
        tables = {t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'cat'").fetchall()}
        if "ducklake_column" not in tables:
            return []
        names = dict(((t, c), n) for t, c, n in con.execute(
            "SELECT table_id, column_id, column_name FROM cat.ducklake_column").fetchall())
        counts: dict[tuple[str, str], int] = {}

        def add(column: str, label: str, value: object) -> None:
            kind = check.kind(column, value)
            if kind:
                counts[(label, kind)] = counts.get((label, kind), 0) + 1

        for stats in ("ducklake_file_column_stats", "ducklake_table_column_stats"):
            if stats in tables:
                for t, c, lo, hi in con.execute(
                        f"SELECT table_id, column_id, min_value, max_value FROM cat.{stats}"
                ).fetchall():
                    col = names.get((t, c), "")
                    add(col, f"{stats}.{col}", lo)
                    add(col, f"{stats}.{col}", hi)
        for t in sorted(x for x in tables if x.startswith("ducklake_inlined_data")):
            rel_cols = [r[0] for r in con.execute(f"DESCRIBE cat.{t}").fetchall()]
            for row in con.execute(f"SELECT * FROM cat.{t}").fetchall():
                for col, value in zip(rel_cols, row, strict=True):
                    add(col, f"{t}.{col}", value)
        return [Finding(rel, label, k, n, False) for (label, k), n in counts.items()]
    finally:
        con.close()


def nested_string_findings(path: Path, rel: str, raw: RawNeedles) -> list[Finding]:
    """Parquet files with nested columns (Delta checkpoints): their string leaves (the `stats`
    JSON of every add action) searched like raw bytes."""
    schema = pq.read_schema(path)
    if not any(pa.types.is_nested(f.type) for f in schema):
        return []
    table = pq.read_table(path)
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    counts: dict[tuple[str, str], int] = {}
    for name in table.column_names:
        col = table[name]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        data = "\n".join(v for v in col.to_pylist() if v).encode()
        for kind, n in raw_counts(data, raw).items():
            counts[(name, kind)] = counts.get((name, kind), 0) + n
    return [Finding(rel, c, k, n, False, possible=k in POSSIBLE)
            for (c, k), n in counts.items()]


def format_dirs(flake: FormatLake, fmt: TableFormat) -> set[str]:
    """The root's top-level directories the format keeps its tables in (Delta: one per table;
    Iceberg, DuckLake: one for all): where its current data files are. A Parquet file in them
    is the format's (data, delete file, checkpoint, old version), one elsewhere is not."""
    root = flake.root.resolve()
    current = {Path(f).resolve().relative_to(root).parts[0]
               for t in flake.tables() for f in fmt.data_files(flake, t)}
    # Delta's table directories even when no current file is left in one (its log is there)
    return current | {t for t in flake.tables() if (root / t).is_dir()}


def run_format_audit(root: Path, customer_ids: np.ndarray, workers: int = 2,
                     names: bool = True) -> AuditReport:
    flake = FormatLake.open(root)
    fmt = get(flake.format)
    needles = gather_format_needles(flake, fmt, customer_ids)
    patterns = needles.text_patterns(names)
    raw = raw_needles(needles, names)
    check = ValueCheck(needles)
    anywhere = column_needles(needles, patterns)
    report = AuditReport(str(root), int(len(customer_ids)))
    report.findings += snapshot_findings(flake, fmt, needles, patterns)
    owned = format_dirs(flake, fmt)
    fmt.release(flake)  # the catalog file is read below as a plain database

    def one(p: Path) -> list[Finding]:
        rel = p.relative_to(root).as_posix()
        if is_parquet(p) and rel.split("/")[0] not in owned:  # an export, a copy: no table's
            return parquet_or_bytes(p, rel, raw, report.unreadable, lambda: audit_any_parquet(
                p, rel, anywhere, False, journal_key_kind(rel)))
        if is_parquet(p):
            return parquet_or_bytes(p, rel, raw, report.unreadable, lambda: audit_parquet(
                p, rel, needles, patterns, False, nested=False) +
                nested_string_findings(p, rel, raw))
        out = audit_raw(p, rel, raw, table_reader(anywhere), report.unreadable)
        if p.suffix == ".avro":
            out += iceberg_manifest_findings(p, rel, check)
        elif is_duckdb(p):
            out += ducklake_catalog_findings(p, rel, check)
        return out

    return read_every_file(root, one, report, workers)
