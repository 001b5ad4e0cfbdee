"""The audit: read every file under the lake root and report any trace of the given customers.

Parquet table files are read through their columns: key columns (customer, device, recording
ids, skill pseudonyms) by exact match, text columns for the customers' emails and phone numbers,
and their full names and street addresses as *possible* mentions (neither is unique: they never
fail the audit).
Any other Parquet file — an export, a copy, a scrub job's journal of keys — is read through all
its columns whatever their names (see `column_needles` for what matches where). Any other file —
journals, logs, temp files, manifests, receipts — is read as raw bytes, and decompressed too when
it is compressed as a whole (gzip, bz2, xz, zstd, LZ4); an archive (zip, tar) member by member;
a table file that is not Parquet (Arrow IPC, ORC, DuckDB, SQLite, Avro: audit_tables) through its
values.

A trace in a file a query reads (the manifest references it, or the views' globs match it) is
*visible*; a trace anywhere else is *physically present* though hidden, and so is one in a
dictionary entry that no row of its column uses (see pipeline/dictionary.py). Copy-on-write must
leave neither."""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.audit_tables import (
    PartiallyRead,
    table_columns,
    table_kind,
    table_kind_of_head,
    unopenable_format,
)
from pipeline.audit_unpack import bind, check_cancelled, current_dir, unpack_dir
from pipeline.dictionary import child_types, entries, entries_used, unused_entries
from pipeline.lake import SCRUB_DIR, Lake
from pipeline.plan import key_array, match, match_np, plain_views

KEY_COLUMNS = ("customer_id", "device_id", "recording_id", "skill_user_id")
# kinds of finding that may name another customer (not unique): listed apart, never residue
POSSIBLE = ("name", "address")
# how a finding in dictionary entries no row uses is labelled (never visible to a query)
UNUSED = "(dictionary entries no row uses)"
RAW_CHUNK = 32 << 20

# When a value can be told from an ordinary one. Outside the columns named for the keys (raw
# bytes, Parquet files that are no table's) a key matches anywhere only when it is distinctive:
# an integer of at least LONG_ID_DIGITS digits (recording and device ids are 63-bit hashes: no
# count, hour or size equals one by chance), a string of at least LONG_TOKEN_CHARS characters
# (skill pseudonyms). A short one (customer id 7) matches only where a name says what it is.
LONG_ID_DIGITS = 10
LONG_TOKEN_CHARS = 12


def kind_name(kind: str) -> str:
    """Regex of a name that ends naming key kind `kind`: the kind's noun (customers also go by
    "cust"), optionally followed by id/ids, any case and separators. Matches customer_id,
    CustomerID, cust, src_customer_id, customer_ids; not customers, n_customers or
    customer_count (counts, whose small values would be false positives)."""
    stem = kind.removesuffix("_id")
    noun = "cust(?:omer)?" if stem == "customer" else re.escape(stem).replace("_", "[_ -]?")
    return noun + r"(?:[_ .-]?ids?)?"


def named_for(column: str, kind: str) -> bool:
    """Does a column's name say it holds key kind `kind`? (a nested leaf by its path's end)"""
    return re.search(kind_name(kind) + "$", column, re.IGNORECASE) is not None


# A scrub job's journal of the keys it resolved: a Parquet file per kind, its column named `k`.
JOURNAL_KEYS = re.compile(rf"^{SCRUB_DIR}/[^/]+/keys-(\w+)\.parquet$")
# Its plan and log name the requested customers present in the lake (plan.json's
# `present_id_values`, each journal.jsonl entry's `present`).
JOURNAL_PRESENT = re.compile(rb'"(present(?:_id_values)?)"\s*:\s*\[([-\d,\s]*)\]')


def journal_key_kind(rel: str) -> str | None:
    """The key kind of an (unfinished) scrub job's key file, None for any other path."""
    m = JOURNAL_KEYS.match(rel)
    return m.group(1) if m else None


@dataclass
class Finding:
    path: str
    column: str  # column (a nested leaf as a.b), "(bytes)" for a non-Parquet file, or the field
    # of a scrub job's journal that names the customers (present_id_values, present)
    kind: str  # customer_id | device_id | recording_id | skill_user_id | email | phone | name
    # | address
    rows: int  # rows (Parquet) or occurrences (raw bytes)
    visible: bool  # in a file a query reads (the manifest's, or one the views' globs match)
    possible: bool = False  # a name or address mention: reported apart, never fails


# How a table file found inside another is read: (its path, the audited file's relative path,
# its kind: "parquet" or one of audit_tables') -> findings
TableReader = Callable[[Path, str, str], list[Finding]]


@dataclass
class AuditReport:
    lake: str
    customers: int
    files_read: int = 0
    bytes_read: int = 0
    findings: list[Finding] = field(default_factory=list)
    # ids the generator never gave a customer (a voicescrub lake knows): "clean" says nothing
    # of them, so the report says so
    never_in_lake: int = 0
    # what could not be read (an encrypted archive member, a damaged stream or Parquet file):
    # the audit cannot say it is clean of them
    unreadable: list[str] = field(default_factory=list)

    @property
    def residue(self) -> list[Finding]:
        return [f for f in self.findings if not f.possible]

    @property
    def visible_rows(self) -> int:
        return sum(f.rows for f in self.residue if f.visible)

    @property
    def hidden_rows(self) -> int:
        return sum(f.rows for f in self.residue if not f.visible)

    @property
    def clean(self) -> bool:
        """Proven clean: no residue, and everything could be read."""
        return not self.residue and not self.unreadable

    def to_json(self) -> dict:
        return {"lake": self.lake, "customers": self.customers, "files_read": self.files_read,
                "bytes_read": self.bytes_read, "clean": self.clean,
                "residue_found": bool(self.residue),
                "ids_never_in_lake": self.never_in_lake,
                "unreadable": self.unreadable,
                "logically_visible_rows": self.visible_rows,
                "physically_present_hidden": self.hidden_rows,
                "possible_name_mentions": sum(f.rows for f in self.findings
                                              if f.possible and f.kind == "name"),
                "possible_address_mentions": sum(f.rows for f in self.findings
                                                 if f.possible and f.kind == "address"),
                "findings": [asdict(f) for f in self.findings]}


@dataclass
class Needles:
    keys: dict[str, pa.Array]
    emails: list[str]
    phones: list[str]
    names: list[str]
    addresses: list[str] = field(default_factory=list)

    def text_patterns(self, names: bool = True) -> dict:
        """What text columns are searched with: exact-token sets for emails and phones
        (phones without separators), regexes of full names and street addresses for possible
        mentions (neither is unique to a customer)."""
        sets = {}
        if self.emails:
            sets["email"] = pa.array(sorted(set(self.emails)), pa.string())
        if self.phones:
            stripped = {re.sub(r"[ ().-]", "", p) for p in self.phones}
            sets["phone"] = pa.array(sorted(stripped), pa.string())
        return {"sets": sets, "name": _alternation(self.names) if names else [],
                "address": _alternation(self.addresses) if names else []}


# RE2 runs a regex of alternatives in linear time until its DFA outgrows its memory budget:
# 1,000 names searched at 133 MB/s, 1,500 at 0.3 MB/s. So names are searched in batches.
ALTERNATION_BATCH = 400


def _alternation(words: list[str]) -> list[str]:
    """RE2 patterns, each matching any of up to ALTERNATION_BATCH of the words."""
    words = sorted({w for w in words if w}, key=len, reverse=True)
    return ["|".join(re.escape(w) for w in words[i:i + ALTERNATION_BATCH])
            for i in range(0, len(words), ALTERNATION_BATCH)]


def gather_needles(lake: Lake, customer_ids: np.ndarray, workers: int = 2) -> Needles:
    """What to look for: the generator's ground truth when the lake is a voicescrub lake,
    plus whatever the lake still links to these customers."""
    from pipeline.damage import UnreadableFiles
    from pipeline.resolve import resolve_keys

    skipped: set[str] = set()
    while True:  # (each level of the lineage may find damaged files of its own)
        try:
            keys = resolve_keys(lake, customer_ids, workers)
            break
        except UnreadableFiles as e:
            # an audit goes on with what can be read: the damaged files are searched as
            # bytes and listed as unreadable by the walk, so the audit cannot end "clean"
            if not {f.path for f in e.files} - skipped:
                raise
            skipped |= {f.path for f in e.files}
            lake = _ReadableFiles(lake, skipped)
    return needles_from(lake.manifest, customer_ids, keys,
                        lambda ids: _pii_in_lake(lake, ids))


class _ReadableFiles(Lake):
    """The lake without the data files that could not be read (for resolving keys)."""

    def __init__(self, lake: Lake, unreadable: set[str]) -> None:
        super().__init__(lake.root, lake.lineage, lake.manifest)
        self.unreadable = unreadable

    def files(self, table: str) -> list:
        return [f for f in super().files(table) if f.path not in self.unreadable]


def needles_from(manifest: dict | None, customer_ids: np.ndarray, keys: dict[str, pa.Array],
                 pii_of: Callable[[pa.Array | None], dict[str, list[str]]]) -> Needles:
    """The resolved keys, widened by the generator's ground truth (voicescrub lakes), and the
    customers' PII (ground truth and what the customers table still holds)."""
    emails: list[str] = []
    phones: list[str] = []
    names: list[str] = []
    addresses: list[str] = []
    if manifest is not None and manifest.get("generator") == "voicescrub":
        from generators.truth import config_from_manifest, identifiers

        ids = identifiers(config_from_manifest(manifest), customer_ids)
        for kind, arr in ids.keys().items():
            if kind in keys:
                keys[kind] = key_array(pa.concat_arrays([keys[kind].cast(arr.type), arr]))
            else:
                keys[kind] = arr
        emails, phones, names = ids.email, ids.phone, ids.full_name
        addresses = ids.street_address
    pii = pii_of(keys.get("customer_id"))
    return Needles(keys, sorted(set(emails) | set(pii["email"])),
                   sorted(set(phones) | set(pii["phone"])),
                   sorted(set(names) | set(pii["full_name"])),
                   sorted(set(addresses) | set(pii.get("street_address", []))))


def _pii_in_lake(lake: Lake, ids: pa.Array | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"email": [], "phone": [], "full_name": [],
                                 "street_address": []}
    if ids is None:
        return out
    for f in lake.files("customers") if "customers" in lake.tables() else []:
        try:
            schema = pq.read_schema(lake.root / f.path)
            cols = [c for c in ("customer_id", *out) if c in schema.names]
            if "customer_id" not in cols:
                continue
            t = pq.read_table(lake.root / f.path, columns=cols)
        except (OSError, pa.ArrowException):  # listed as unreadable by the walk
            continue
        t = t.filter(match(t["customer_id"], ids))
        for c in out:
            if c in t.column_names:
                out[c] += [v for v in t[c].to_pylist() if v]
    return out


def walk(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            yield p


def is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, 2)
            return head == b"PAR1" and fh.read(4) == b"PAR1"
    except OSError:
        return False


def audit_parquet(path: Path, rel: str, needles: Needles, patterns: dict,
                  visible: bool, nested: bool = True) -> list[Finding]:
    """The file's key columns and text columns, and with `nested` the text in its lists,
    structs and maps (a table-format audit reads those its own way: Delta's checkpoints)."""
    out = []
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    text, keys, holders = [], [], []
    for name in schema.names:
        typ = schema.field(name).type
        if _is_string(typ):
            text.append(name)
        elif nested and pa.types.is_nested(typ) and _holds_string(typ):
            holders.append(name)  # a list, struct or map: its text leaves are searched
        if name in needles.keys:
            keys.append(name)
    columns = list(dict.fromkeys(keys + text + holders))
    if not columns:
        return out
    for i in range(pf.metadata.num_row_groups):
        rg = pf.read_row_group(i, columns=columns)
        for name in columns:
            col = plain_views(rg[name].combine_chunks())  # delta-rs writes views
            # the rows' values (visible as the file is), then the dictionary entries no row
            # uses (never visible)
            for values, label, seen in ((col, name, visible),
                                        (unused_entries(col), f"{name} {UNUSED}", False)):
                if values is None:
                    continue
                if name in text:
                    out += _text_findings(values, rel, label, patterns, seen)
                if name in keys:
                    if pa.types.is_dictionary(values.type):
                        values = values.cast(values.type.value_type)
                    n = pc.sum(match(values, needles.keys[name])).as_py() or 0
                    if n:
                        out.append(Finding(rel, label, name, n, seen))
            if name in holders:  # its text leaves (named as an export's are), rows counted
                out += _nested_text_findings(name, col, rel, patterns, visible)
    return _merge(out)


def _nested_text_findings(name: str, col: pa.Array, rel: str, patterns: dict,
                          visible: bool) -> list[Finding]:
    """The text leaves of a list, struct or map column: the rows whose values hold a trace,
    and the dictionary entries no value uses (a nested dictionary is written whole too)."""
    out = []
    for leaf, values, rows in _leaves(name, col):
        if not _is_string(values.type):
            continue
        values = plain_views(values)  # (a stored schema keeps string views in lists too)
        for kind, mask in _text_value_masks(values, patterns).items():
            if n := _rows_hit(mask, rows):
                out.append(Finding(rel, leaf, kind, n, visible, possible=kind in POSSIBLE))
        if (unused := unused_entries(values)) is not None:
            out += _text_findings(unused, rel, f"{leaf} {UNUSED}", patterns, False)
    return out


def _holds_string(t: pa.DataType) -> bool:
    """Whether a type is text or holds some (in a list, struct, map or union)."""
    kids = [f.type for f in t] if pa.types.is_union(t) else child_types(t)
    return _is_string(t) or any(_holds_string(c) for c in kids)


def _is_string(t: pa.DataType) -> bool:
    """A text column's type: a string of any layout, dictionary-encoded or not."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


@dataclass
class KeySets:
    """One key kind's values for columns not named like the keys, split by distinctiveness."""
    distinctive: pa.Array  # long ids and pseudonyms: match in any column of their type
    every: pa.Array  # short ones too (customer id 7): only in a column named for the kind


@dataclass
class ColumnNeedles:
    """What a Parquet file that is no table's is searched for, whatever its columns' names:
    integer columns for the integer keys, text and binary columns for the string keys and the
    integer ids as decimal text (an export may cast them), exact values; emails and phone
    numbers token by token, as in table files."""
    ints: dict[str, KeySets]
    texts: dict[str, KeySets]
    patterns: dict  # Needles.text_patterns


def _distinctive(values: pa.Array) -> pa.Array:
    if pa.types.is_integer(values.type):
        long = pc.greater_equal(pc.abs(values), 10 ** (LONG_ID_DIGITS - 1))
    else:
        long = pc.greater_equal(pc.utf8_length(values), LONG_TOKEN_CHARS)
    return values.filter(long)


def column_needles(needles: Needles, patterns: dict) -> ColumnNeedles:
    """The needles split once per audit (not per file): distinctive and every value per kind."""
    ints, texts = {}, {}
    for kind, values in needles.keys.items():
        if pa.types.is_integer(values.type):
            values = key_array(values.cast(pa.int64()))  # sorted: match_np's index wants it
            ints[kind] = KeySets(_distinctive(values), values)
            texts[kind] = KeySets(ints[kind].distinctive.cast(pa.string()),
                                  values.cast(pa.string()))
        elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            texts[kind] = KeySets(_distinctive(values), values)
    return ColumnNeedles(ints, texts, patterns)


def audit_any_parquet(path: Path, rel: str, needles: ColumnNeedles, visible: bool,
                      file_kind: str | None = None) -> list[Finding]:
    """Every column of a Parquet file that is no table's (nested ones through their leaves).
    `file_kind`: the key kind its path says every column holds (a scrub job's key file)."""
    pf = pq.ParquetFile(path)
    columns = ((name, rg[name].combine_chunks(), None)
               for rg in (pf.read_row_group(i) for i in range(pf.metadata.num_row_groups))
               for name in rg.column_names)
    return column_findings(columns, rel, needles, visible, file_kind)


def audit_table_file(path: Path, rel: str, kind: str, needles: ColumnNeedles) -> list[Finding]:
    """Every column of a table file that is not Parquet (Arrow IPC, ORC, a DuckDB or SQLite
    database, Avro: see audit_tables), as an export's Parquet columns are read."""
    found: list[Finding] = []
    try:
        return column_findings(table_columns(path, kind), rel, needles, False, found=found)
    except Exception as e:
        raise PartiallyRead(_merge(found), e) from e


def column_findings(columns: Iterable[tuple[str, pa.Array, np.ndarray | None]], rel: str,
                    needles: ColumnNeedles, visible: bool, file_kind: str | None = None,
                    found: list[Finding] | None = None) -> list[Finding]:
    """Findings in columns of any names and types: (name, values, the row of each value or
    None); nested ones through their leaves. `found` collects them as they come (what a
    reader that breaks off had found)."""
    out = found if found is not None else []
    # (leaf, dictionary) -> (dictionary, entries some row uses, kinds named): batches of one
    # file share a dictionary (Arrow IPC), so an entry is unused only if no batch uses it
    dictionaries: dict[tuple, tuple[pa.Array, np.ndarray, set[str]]] = {}
    for name, col, col_rows in columns:
        for leaf, values, rows in _leaves(name, col, col_rows):
            named = {k for k in {*needles.ints, *needles.texts}
                     if k == file_kind or named_for(leaf, k)}
            for kind, mask in _leaf_masks(values, named, needles).items():
                n = _rows_hit(mask, rows)
                if n:
                    out.append(Finding(rel, leaf, kind, n, visible, possible=kind in POSSIBLE))
            if pa.types.is_dictionary(values.type) and len(values.dictionary):
                d = values.dictionary
                key = (leaf, d.offset, len(d), *(b.address if b is not None else 0
                                                 for b in d.buffers()))
                seen = dictionaries.setdefault(key, (d, np.zeros(len(d), bool), named))
                seen[1][:] |= entries_used(values)
    for (leaf, *_), (d, used, named) in dictionaries.items():
        if used.all():
            continue
        for kind, mask in _leaf_masks(entries(d, ~used), named, needles).items():
            if n := int(np.count_nonzero(mask)):
                out.append(Finding(rel, f"{leaf} {UNUSED}", kind, n, False,
                                   possible=kind in POSSIBLE))
    return _merge(out)


def _leaves(name: str, col: pa.Array,
            rows: np.ndarray | None = None) -> Iterator[tuple[str, pa.Array, np.ndarray | None]]:
    """(path, values, row of each value) of a column's primitive leaves; rows is None when
    there is one value per row. Struct fields are `name.field`; lists and maps are flattened,
    so a hit in a list still counts its row, once."""
    typ = col.type
    if isinstance(col, pa.ExtensionArray):  # (json, uuid, opaque, …): their storage
        yield from _leaves(name, col.storage, rows)
    elif pa.types.is_run_end_encoded(typ):
        yield from _leaves(name, pc.run_end_decode(col), rows)
    elif pa.types.is_union(typ):  # each member type's values, with the rows that hold them
        codes = np.frombuffer(col.buffers()[1], np.int8)[col.offset:col.offset + len(col)]
        dense = typ.mode == "dense"
        offsets = (np.frombuffer(col.buffers()[2], np.int32)[col.offset:col.offset + len(col)]
                   if dense else None)
        for i in range(typ.num_fields):
            at = np.flatnonzero(codes == typ.type_codes[i])
            if not len(at):
                continue
            child = col.field(i)
            values = child.take(pa.array(offsets[at] if dense else at))
            yield from _leaves(name, values,  # (a member type is no column of its own)
                               at if rows is None else rows[at])
    elif pa.types.is_struct(typ):
        for i in range(typ.num_fields):
            yield from _leaves(f"{name}.{typ.field(i).name}", pc.struct_field(col, [i]), rows)
    elif pa.types.is_map(typ):
        as_list = pa.list_(pa.struct([typ.key_field, typ.item_field]))
        yield from _leaves(name, col.cast(as_list), rows)
    elif (pa.types.is_list(typ) or pa.types.is_large_list(typ) or
          pa.types.is_fixed_size_list(typ) or pa.types.is_list_view(typ) or
          pa.types.is_large_list_view(typ)):
        parents = pc.list_parent_indices(col).to_numpy()
        yield from _leaves(name, pc.list_flatten(col), parents if rows is None else rows[parents])
    else:
        yield name, col, rows


def _rows_hit(mask: np.ndarray, rows: np.ndarray | None) -> int:
    return int(mask.sum()) if rows is None else len(np.unique(rows[mask]))


def _is_text(typ: pa.DataType) -> bool:
    return (pa.types.is_string(typ) or pa.types.is_large_string(typ) or
            pa.types.is_binary(typ) or pa.types.is_large_binary(typ))


def _leaf_masks(col: pa.Array, named: set[str], needles: ColumnNeedles) -> dict[str, np.ndarray]:
    """kind -> values holding it, for one leaf of any type (other types hold no needle)."""
    col = plain_views(col)
    typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    masks = {}
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        # ids exported as numbers of another type (pandas makes a nullable id float64, Spark
        # a decimal): the integral values, compared as the integers they are
        col, typ = _integral_as_int64(col), pa.int64()
    if pa.types.is_integer(typ):
        if not pa.types.is_dictionary(col.type) and typ != pa.int64():
            col = col.cast(pa.int64(), safe=False)  # uint64 wraps: only equal bits can match
        sets = needles.ints
    elif _is_text(typ):
        sets = needles.texts
        masks = _text_value_masks(col, needles.patterns)
    else:
        return {}
    for kind, ks in sets.items():
        keys = ks.every if kind in named else ks.distinctive
        if len(keys):
            m = match_np(col, keys)
            if m.any():
                masks[kind] = m
    return masks


def _integral_as_int64(col: pa.Array) -> pa.Array:
    """Float or decimal values as int64 where they are whole numbers (floats only up to 2^53,
    where they are exact), null elsewhere."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_floating(col.type):
        whole = pc.and_(pc.equal(col, pc.trunc(col)), pc.less_equal(pc.abs(col), 2.0**53))
    elif col.type.scale > 0:
        whole = pc.equal(col, pc.round(col))
    else:
        whole = pc.is_valid(col)
    kept = pc.if_else(pc.fill_null(whole, False), col, pa.scalar(None, col.type))
    # whole values only (and decimals too wide for int64 wrap: only equal bits can match)
    return kept.cast(pa.int64(), safe=False)


def _rows_containing(col: pa.Array, chars: bytes) -> np.ndarray:
    """Rows whose bytes contain any of `chars`: a scan of the data buffer with numpy,
    mapped back to rows through the offsets (no per-value call)."""
    if len(col) == 0:
        return np.zeros(0, np.int64)
    wide = pa.types.is_large_string(col.type) or pa.types.is_large_binary(col.type)
    _, off_buf, data_buf = col.buffers()[:3]
    if data_buf is None:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(off_buf, np.int64 if wide else np.int32, count=len(col) + 1,
                            offset=col.offset * (8 if wide else 4))
    data = np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]]
    hit = np.zeros(len(data), dtype=bool)
    for c in chars:
        hit |= data == c
    pos = np.flatnonzero(hit) + offsets[0]
    return np.unique(np.searchsorted(offsets, pos, side="right") - 1)


EMAIL_SPLIT = r"[\s,;:\"'<>()\[\]{}|/\\]+"  # emails never contain these
PHONE_STRIP = r"[ ().-]"  # phones compare without their separators
PHONE_SPLIT = r"[^0-9+]+"


def _token_mask(col: pa.Array, needles: pa.Array, split: str, strip: str | None) -> np.ndarray:
    """Per row: does any token equal a needle? Every value is split into tokens, the tokens
    looked up in the needle set, and the hits mapped back to their rows."""
    out = np.zeros(len(col), dtype=bool)
    if strip is not None:
        col = pc.replace_substring_regex(col, strip, "")
    tokens = pc.split_pattern_regex(col, split)
    flat = pc.list_flatten(tokens)
    if flat.type != needles.type:  # a binary column: compare bytes
        needles = needles.cast(flat.type)
    if len(flat):
        hit = pc.fill_null(pc.is_in(flat, value_set=needles), False)
        out[pc.list_parent_indices(tokens).to_numpy()[hit.to_numpy(zero_copy_only=False)]] = True
    return out


def _text_masks(col: pa.Array, patterns: dict) -> dict[str, np.ndarray]:
    """kind -> rows holding it. Emails and phone numbers: only rows holding '@' or '+' (a byte
    scan) are tokenized and looked up in the needle sets. Names need a regex pass."""
    masks = {}
    sets = patterns.get("sets", {})
    if sets:
        rows = _rows_containing(col, b"@+")
        if len(rows):
            cand = col.take(pa.array(rows))
            for kind, split, strip in (("email", EMAIL_SPLIT, None),
                                       ("phone", PHONE_SPLIT, PHONE_STRIP)):
                if kind in sets:
                    m = np.zeros(len(col), dtype=bool)
                    m[rows] = _token_mask(cand, sets[kind], split, strip)
                    masks[kind] = m
    for kind in POSSIBLE:
        hits = None
        for pattern in patterns.get(kind) or ():
            m = pc.fill_null(pc.match_substring_regex(col, pattern), False)
            hits = m if hits is None else pc.or_(hits, m)
        if hits is not None:
            masks[kind] = hits.to_numpy(zero_copy_only=False)
    return masks


def _text_value_masks(col: pa.Array, patterns: dict) -> dict[str, np.ndarray]:
    """kind -> values (rows) holding it; a dictionary column has each distinct value searched
    once, then the hits mapped to the rows that use them."""
    if not pa.types.is_dictionary(col.type):
        return _text_masks(col, patterns)
    idx = pc.fill_null(col.indices, 0).to_numpy(zero_copy_only=False)
    valid = col.indices.is_valid().to_numpy(zero_copy_only=False)
    out = {}
    for kind, m in _text_masks(col.dictionary, patterns).items():
        rows = np.zeros(len(col), dtype=bool)
        rows[valid] = m[idx[valid]]
        out[kind] = rows
    return out


def _text_findings(col: pa.Array, rel: str, name: str, patterns: dict,
                   visible: bool) -> list[Finding]:
    counts = {k: int(m.sum()) for k, m in _text_value_masks(col, patterns).items()}
    return [Finding(rel, name, k, n, visible, possible=k in POSSIBLE)
            for k, n in counts.items() if n]


def _merge(findings: list[Finding]) -> list[Finding]:
    merged: dict[tuple, Finding] = {}
    for f in findings:
        k = (f.path, f.column, f.kind)
        if k in merged:
            merged[k].rows += f.rows
        else:
            merged[k] = f
    return list(merged.values())


TOKENS = {
    # kind -> (pattern over raw bytes, how to turn a match into a comparable value)
    "long_id": re.compile(rb"(?<![\d.])-?\d{%d,20}(?!\d)" % LONG_ID_DIGITS),
    # a customer id after a name that says customer (the rule of Parquet columns, kind_name):
    # `customer_id": 4`, `cust=4`, also inside JSON held in a JSON string (`customer_id\\":4`)
    "customer_id": re.compile(kind_name("customer_id").encode() +
                              rb"[\\\"':= ]{1,6}(\d+)(?!\d)", re.IGNORECASE),
    # …and every id of a list after such a name: `"customer_ids": [7, 8, 9]`
    "customer_id_list": re.compile(kind_name("customer_id").encode() +
                                   rb"[\\\"':= ]{0,6}\[([-\d,\s]*)\]", re.IGNORECASE),
    # from the start of a run of such characters only: tried at every position, a run with no
    # "@" (a hex dump, a column of zeros) was scanned to its end from each: quadratic
    "email": re.compile(rb"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "token": re.compile(rb"(?<![\w.:-])[\w.:-]{12,}"),  # (from a run's start: each run once)
    "phone": re.compile(rb"\+\d[\d ()-]{5,20}\d"),
}


_DIGIT_RUN = re.compile(rb"\d{%d,}" % LONG_ID_DIGITS)
_AT = re.compile(rb"@")
_DOMAIN = re.compile(rb"[\w-]+(?:\.[\w-]+)+")
# every byte that cannot be part of an email's local part (TOKENS["email"]: [\w.+-]) as a space
_LOCAL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-"
_LOCAL_MAP = bytes(b if b in _LOCAL else 0x20 for b in range(256))


def long_ids(data: bytes) -> list[int]:
    """What `TOKENS["long_id"]` finds, as integers: digit runs of 10-20 digits not after a
    "." (a decimal's fraction), negative after a "-" that follows no digit or ".". Found from
    runs of at least 10 digits: Python's regex tried the lookbehind at every byte, 2.5x
    slower."""
    out = []
    for m in _DIGIT_RUN.finditer(data):
        start, end = m.span()
        if end - start > 20:
            continue
        before = data[start - 1:start]
        if before == b".":
            continue
        value = int(m.group())
        if before == b"-" and (start < 2 or data[start - 2:start - 1] not in b"0123456789."):
            value = -value
        out.append(value)
    return out


def email_tokens(data: bytes) -> list[bytes]:
    r"""What `TOKENS["email"].findall` finds, found from each "@" (text holds few) instead of
    tried at every byte: the local part is the whole run of [\w.+-] before it, the domain
    as the pattern matches it after."""
    out: list[bytes] = []
    marks = None  # the local-part bytes marked once, for rfind, when an "@" is met
    end = 0  # where the last email ended: findall's matches never overlap
    for m in _AT.finditer(data):
        at = m.start()
        if at < end:
            continue
        if marks is None:
            marks = data.translate(_LOCAL_MAP)
        start = marks.rfind(b" ", 0, at) + 1
        if start == at or start < end:
            continue  # no local part, or one that runs into the previous email
        domain = _DOMAIN.match(data, at + 1)
        if domain is None:
            continue
        out.append(data[start:domain.end()])
        end = domain.end()
    return out


@dataclass
class RawNeedles:
    """Needles as sets: raw bytes are tokenized once, then each token is a set lookup."""
    ints: dict[str, set[int]]  # every integer key kind: matched against long digit runs
    customer_ids: set[int]  # matched after a name that says customer
    strings: dict[str, set[str]]  # skill_user_id / email / phone
    # possible mentions (kind -> RE2 alternations of full names / street addresses, in
    # batches), counted by Arrow's RE2 kernel
    mentions: dict[str, list[str]] = field(default_factory=dict)


def raw_needles(needles: Needles, names: bool = True) -> RawNeedles:
    # the distinctive values of every integer kind (a long customer id is as telling as a
    # recording id) among the long digit runs; only those: a run of zeros ending in 7 is 7
    ints = {k: set(_distinctive(v).to_pylist()) for k, v in needles.keys.items()
            if pa.types.is_integer(v.type)}
    cust = set(needles.keys["customer_id"].to_pylist()) if "customer_id" in needles.keys \
        else set()
    sk = needles.keys.get("skill_user_id")
    strings = {"skill_user_id": set(sk.to_pylist()) if sk is not None else set(),
               "email": {e.lower() for e in needles.emails}, "phone": set(needles.phones)}
    mentions = {}
    if names:
        for kind, words in (("name", needles.names), ("address", needles.addresses)):
            if words:
                mentions[kind] = _alternation(words)
    return RawNeedles(ints, cust, strings, mentions)


def raw_counts(data: bytes, needles: RawNeedles) -> dict[str, int]:
    """kind -> occurrences of the needles among the tokens of `data`."""
    counts: dict[str, int] = {}

    def add(kind: str, n: int) -> None:
        if n:
            counts[kind] = counts.get(kind, 0) + n

    longs = long_ids(data)
    for kind, values in needles.ints.items():
        add(kind, sum(v in values for v in longs))
    add("customer_id", sum(int(m) in needles.customer_ids
                           for m in TOKENS["customer_id"].findall(data)))
    add("customer_id", sum(int(v) in needles.customer_ids
                           for m in TOKENS["customer_id_list"].findall(data)
                           for v in re.findall(rb"-?\d+", m)))
    tokens = {m.decode(errors="replace") for m in TOKENS["token"].findall(data)}
    add("skill_user_id", len(tokens & needles.strings["skill_user_id"]))
    emails = [m.decode(errors="replace") for m in email_tokens(data)]
    add("email", sum(_is_email_of(e, needles.strings["email"]) for e in emails))
    phones = [m.decode(errors="replace") for m in TOKENS["phone"].findall(data)]
    add("phone", sum(p in needles.strings["phone"] for p in phones))
    if needles.mentions:
        chunk = pa.array([data], pa.large_binary())
        for kind, patterns in needles.mentions.items():
            for pattern in patterns:
                add(kind, pc.count_substring_regex(chunk, pattern)[0].as_py())
    return counts


def _is_email_of(token: str, emails: set[str]) -> bool:
    """The token is one of the (lower-case) emails, or one followed by more text, as in file
    names: `jane@example.com.csv`, `Jane@Example.com_2024`, `jane@example.com-2024`."""
    local, _, domain = token.lower().partition("@")
    domain = domain.split("_")[0]  # no domain has an underscore: `…com_2024`
    domains = [domain]
    while "." in domain.rpartition(".")[0]:
        domain = domain.rpartition(".")[0]
        domains.append(domain)
    for d in list(domains):  # a top-level domain has no hyphen: `…com-2024`
        head, dot, last = d.rpartition(".")
        if dot and "-" in last:
            domains.append(f"{head}.{last.split('-')[0]}")
    # (the local part is taken whole: `x-jane@…` may be another person's address than `jane@…`)
    return any(f"{local}@{d}" in emails for d in domains)


def journal_counts(data: bytes, customer_ids: set[int]) -> dict[str, int]:
    """field -> customer ids a scrub job's plan or log names as present (certain traces)."""
    counts: dict[str, int] = {}
    for fieldname, values in JOURNAL_PRESENT.findall(data):
        n = sum(int(v) in customer_ids for v in re.findall(rb"-?\d+", values))
        if n:
            counts[fieldname.decode()] = counts.get(fieldname.decode(), 0) + n
    return counts


def audit_raw(path: Path, rel: str, needles: RawNeedles,
              read_table: TableReader | None = None,
              unreadable: list[str] | None = None) -> list[Finding]:
    """Occurrences in a file's bytes; under _scrub/ also the customers a job's journal names.
    Then, when the file holds more than its bytes show, its content is opened (see
    `_opened_findings`): a file compressed as a whole, an archive (zip, also one with data
    before it; tar), a Parquet file inside either. What cannot be read (an encrypted member, a
    damaged stream) is listed in `unreadable`."""
    in_journal = rel.startswith(SCRUB_DIR + "/")
    with open(path, "rb") as fh:
        counts = _scan(fh, needles, in_journal)
    found = _findings(rel, "(bytes)", counts)
    with open(path, "rb") as fh:
        found += _opened_findings(fh, "", rel, needles, read_table, 0,
                                  unreadable if unreadable is not None else [], path)
    return found


def _findings(rel: str, column: str, counts: dict[tuple[str | None, str], int]
              ) -> list[Finding]:
    return [Finding(rel, fieldname or column, kind, n, False, possible=kind in POSSIBLE)
            for (fieldname, kind), n in counts.items() if n]


def _scan(fh: BinaryIO, needles: RawNeedles, in_journal: bool, head: bytes = b"",
          unreadable: list[str] | None = None, where: str = ""
          ) -> dict[tuple[str | None, str], int]:
    """(field, kind) -> occurrences in a stream, read a chunk at a time. The field is None
    but for the customers a scrub job's journal names (its field: present_id_values, …).
    A stream that breaks off (a damaged or cut compressed file) keeps what was read."""
    counts: dict[tuple[str | None, str], int] = {}
    tail = b""
    chunk = head
    while True:
        more, broken = _read_up_to(fh, RAW_CHUNK)
        if broken is not None and unreadable is not None:
            unreadable.append(f"{where}: {_reason(broken)} (read up to there)")
        chunk += more
        if not chunk:
            break
        data = tail + chunk
        for kind, n in raw_counts(data, needles).items():
            counts[(None, kind)] = counts.get((None, kind), 0) + n
        if in_journal:
            for fieldname, n in journal_counts(data, needles.customer_ids).items():
                key = (fieldname, "customer_id")
                counts[key] = counts.get(key, 0) + n
        # keep an overlap so a needle cut by the chunk boundary is still seen (it may then
        # count twice: a count here only has to be non-zero to fail the audit)
        tail = data[-256:]
        if len(more) < RAW_CHUNK or broken is not None:
            break
        chunk = b""
    return counts


def _read_up_to(fh: BinaryIO, n: int) -> tuple[bytes, BaseException | None]:
    """Up to n bytes, read a MiB at a time: a decompressing stream that breaks off (a cut or
    damaged file) raises on the read that meets the damage, and what came before is kept."""
    parts, got = [], 0
    # read1 where a decompressing stream has it: read() throws away what it decompressed
    # before the damage, read1() returns it first
    read = getattr(fh, "read1", fh.read)
    while got < n:
        check_cancelled()
        try:
            piece = read(min(1 << 20, n - got))
        except Exception as e:  # noqa: BLE001 - zlib.error, lzma.LZMAError, EOFError, …
            return b"".join(parts), e
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts), None


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


# Containers inside containers are opened up to this depth (a zip in a tar.gz is three);
# deeper ones are read as bytes.
ARCHIVE_DEPTH = 6


def _is_tar(head: bytes) -> bool:
    """A tar header: the ustar magic (POSIX and GNU tars; pre-POSIX ones are read as bytes)
    and a header checksum that adds up (text with "ustar" at byte 257 is no tar)."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    try:
        want = int(head[148:156].split(b"\0")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return want == sum(head[:148]) + 8 * 32 + sum(head[156:512])


def _opened_findings(fh: BinaryIO, label: str, rel: str, needles: RawNeedles,
                     read_table: TableReader | None,
                     depth: int, unreadable: list[str], path: Path) -> list[Finding]:
    """Findings in what the file at `path` (open as `fh`) holds beyond its bytes:
    decompressed, a tar's or a zip's members, a Parquet file's columns; [] for plain bytes
    (the caller scanned them). Each finding's column names where it was found, e.g.
    `(zip) a.tar.gz (gzip) (tar) b.csv: (bytes)`."""
    head = fh.read(512)
    codec = compression_of_head(head)
    where = f"{rel}{label}"
    try:
        if codec is not None:
            stream = _decompressing(_Prefixed(head, fh), codec)
            return _content_findings(stream, f"{label} ({codec})", rel, needles, read_table,
                                     depth + 1, unreadable)
        if _is_tar(head):
            return _tar_findings(_Prefixed(head, fh), f"{label} (tar)", rel, needles,
                                 read_table, depth + 1, unreadable)
        kind = table_kind(path, head)
        if kind is not None:
            found = _labelled(read_table(path, rel, kind), label) if read_table else []
            if zipfile.is_zipfile(path):  # a database holding a zip (an attachment) near its end
                found += _file_findings(path, label, rel, needles, read_table, depth,
                                        unreadable)
            return found
        if head[:4] in (b"PAR1", b"PK\x03\x04") or zipfile.is_zipfile(path):
            return _file_findings(path, label, rel, needles, read_table, depth, unreadable)
        what = unopenable_format(head)
        if what is not None:
            unreadable.append(f"{where}: {what}, which the audit cannot open; searched as bytes "
                              f"only")
    except PartiallyRead as e:  # a table file that breaks off: what came before still counts
        unreadable.append(f"{where}: {_reason(e.cause)} (read up to there)")
        return _labelled(e.found, label)
    except Exception as e:  # noqa: BLE001 - a damaged container: its bytes were scanned
        unreadable.append(f"{where}: {_reason(e)}")
    return []


def _content_findings(fh: BinaryIO, label: str, rel: str, needles: RawNeedles,
                      read_table: TableReader | None,
                      depth: int, unreadable: list[str]) -> list[Finding]:
    """A stream inside a file (a member, a decompressed stream): its bytes scanned, then
    opened in turn when it holds more (up to ARCHIVE_DEPTH)."""
    head = fh.read(512)
    container = (head[:4] == b"PAR1" or head[:4] == b"PK\x03\x04" or _is_tar(head)
                 or compression_of_head(head) is not None
                 or table_kind_of_head(head) is not None)
    column = _bytes_column(label)
    what = unopenable_format(head)
    if what is not None:
        unreadable.append(f"{rel}{label}: {what}, which the audit cannot open; searched as "
                          f"bytes only")
    if container and depth >= ARCHIVE_DEPTH:
        unreadable.append(f"{rel}{label}: nested more than {ARCHIVE_DEPTH} levels deep; "
                          f"searched as bytes only")
    if not container or depth >= ARCHIVE_DEPTH:
        return _findings(rel, column,
                         _scan(fh, needles, False, head, unreadable, f"{rel}{label}"))
    with tempfile.TemporaryDirectory(prefix="member-", dir=current_dir()) as d:
        # copied once, then opened as the file it is
        tmp = Path(d) / "content"
        _copy_bounded(fh, tmp, head, f"{rel}{label}", unreadable)
        # its bytes first, whatever it turns out to be (a CSV starting "PK,", a tar damaged
        # half-way, text starting "BZh"): a stored zip member or a tar's text then counts
        # twice, once here and once where it was opened
        with open(tmp, "rb") as t:
            found = _findings(rel, column, _scan(t, needles, False))
        with open(tmp, "rb") as t:
            found += _opened_findings(t, label, rel, needles, read_table, depth,
                                      unreadable, tmp)
    return found


# What one stream inside a file may unpack to on disk (a temporary copy); past it the rest is
# not read and the audit says so (a small archive can unpack to terabytes).
UNPACK_LIMIT = int(os.environ.get("VOICESCRUB_AUDIT_UNPACK_LIMIT", 8 << 30))


def _copy_bounded(fh: BinaryIO, dst: Path, head: bytes, where: str,
                  unreadable: list[str]) -> None:
    copied = len(head)
    with open(dst, "wb") as out:
        out.write(head)
        while copied < UNPACK_LIMIT:
            piece, broken = _read_up_to(fh, min(RAW_CHUNK, UNPACK_LIMIT - copied))
            out.write(piece)
            copied += len(piece)
            if broken is not None:
                unreadable.append(f"{where}: {_reason(broken)} (read up to there)")
                return
            if not piece:
                return
    if fh.read(1):
        unreadable.append(f"{where}: larger than the unpack limit of {UNPACK_LIMIT:,} bytes "
                          f"(VOICESCRUB_AUDIT_UNPACK_LIMIT); the rest was not read")


def _labelled(found: list[Finding], label: str) -> list[Finding]:
    """Findings in a table file inside another, their columns prefixed with where it was."""
    if not label:
        return found
    return [Finding(f.path, f"{label.strip()}: {f.column}", f.kind, f.rows, f.visible,
                    f.possible) for f in found]


def _bytes_column(label: str) -> str:
    """The column of a finding in a stream's bytes: `(gzip)` for a decompressed file,
    `(zip) a/b.csv: (bytes)` for a member."""
    label = label.strip()
    return label if label.endswith(")") else f"{label}: (bytes)"


def _file_findings(path: Path, label: str, rel: str, needles: RawNeedles,
                   read_table: TableReader | None,
                   depth: int, unreadable: list[str]) -> list[Finding]:
    """A seekable file that is a Parquet file or a zip."""
    if is_parquet(path):
        return _labelled(read_table(path, rel, "parquet"), label) if read_table else []
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head == b"PAR1":
            unreadable.append(f"{rel}{label}: starts as a Parquet file but has no footer "
                              f"(cut off?); searched as bytes only")
        elif head == b"PK\x03\x04":
            unreadable.append(f"{rel}{label}: starts as a zip but its directory cannot be read "
                              f"(cut off?); searched as bytes only")
        return []
    out: list[Finding] = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            inner = f"{label} (zip) {info.filename}"
            try:
                with zf.open(info) as fh:
                    out += _content_findings(fh, inner, rel, needles, read_table,
                                             depth + 1, unreadable)
            except Exception as e:  # noqa: BLE001 - encrypted, unsupported compression, bad
                unreadable.append(f"{rel}{inner}: {_reason(e)}")  # CRC: the others still count
    return out


def _tar_findings(raw: BinaryIO, label: str, rel: str, needles: RawNeedles,
                  read_table: TableReader | None,
                  depth: int, unreadable: list[str]) -> list[Finding]:
    """A tar's members, read as a stream (the tar may be compressed: no seeking), and the
    members' names (an export may be named for its customer)."""
    out: list[Finding] = []
    names: list[str] = []
    try:
        with tarfile.open(fileobj=raw, mode="r|") as tf:
            for member in tf:
                names.append(member.name)
                fh = tf.extractfile(member) if member.isfile() else None
                if fh is not None:
                    try:
                        out += _content_findings(fh, f"{label} {member.name}", rel, needles,
                                                 read_table, depth, unreadable)
                    except Exception as e:  # noqa: BLE001 - e.g. a member that is no valid
                        unreadable.append(f"{rel}{label} {member.name}: {_reason(e)}")  # Parquet
    except Exception as e:  # noqa: BLE001 - tarfile.TarError, zlib.error, …: a damaged tar
        unreadable.append(f"{rel}{label}: {_reason(e)} (members up to there were read)")
    listing = _scan(io.BytesIO("\n".join(names).encode()), needles, False)
    return out + _findings(rel, f"{label.strip()} (member names)", listing)


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (to tell what it is): they come first."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        self.head, self.fh = head, fh

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.fh.read(len(b))
        b[:len(data)] = data
        return len(data)


def _decompressing(fh: BinaryIO, codec: str) -> BinaryIO:
    import bz2
    import gzip
    import lzma

    raw = io.BufferedReader(fh, RAW_CHUNK)  # type: ignore[arg-type]
    if codec in ("zstd", "lz4"):  # (Arrow's lz4 stream is the frame format)
        return pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec)
    return {"gzip": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
            "bz2": lambda f: bz2.BZ2File(f, "rb"),
            "xz": lambda f: lzma.LZMAFile(f, "rb"),
            "lzma": lambda f: lzma.LZMAFile(f, "rb", format=lzma.FORMAT_ALONE)}[codec](raw)


# magic bytes of whole-file compression an export may use
_COMPRESSION_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"),
                      (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                      (b"\x04\x22\x4d\x18", "lz4"))


def compression_of_head(head: bytes) -> str | None:
    """The codec a file is compressed with as a whole (by the magic bytes it starts with)."""
    codec = next((codec for magic, codec in _COMPRESSION_MAGIC if head.startswith(magic)), None)
    return codec or ("lzma" if _is_lzma_alone(head) else None)


def _is_lzma_alone(head: bytes) -> bool:
    """The legacy .lzma header (no magic): the usual properties byte, a dictionary size that
    is 2^n or 2^n + 2^(n-1), and an unknown (all ones) or plausible uncompressed size."""
    if len(head) < 13 or head[0] != 0x5D:
        return False
    d = int.from_bytes(head[1:5], "little")
    n = d.bit_length() - 1
    pow_ok = n >= 12 and d in (1 << n, (1 << n) + (1 << (n - 1)))
    size = head[5:13]
    return pow_ok and (size == b"\xff" * 8 or int.from_bytes(size, "little") < 1 << 44)


def table_reader(anywhere: ColumnNeedles) -> TableReader:
    """How audit_raw reads a table file that is no table's: a Parquet file inside an archive
    or a compressed file, any other table file (Arrow IPC, ORC, a DuckDB or SQLite database,
    Avro) anywhere: all its columns (never visible to a query)."""
    def read(path: Path, rel: str, kind: str) -> list[Finding]:
        if kind == "parquet":
            return audit_any_parquet(path, rel, anywhere, False, None)
        return audit_table_file(path, rel, kind, anywhere)

    return read


def run_audit(lake: Lake, customer_ids: np.ndarray, workers: int = 2,
              names: bool = True) -> AuditReport:
    """Audit every file under the root. names=False skips the possible-mention search of
    full names (the costliest part, and never residue)."""
    if lake.manifest is not None and lake.manifest.get("format"):
        from pipeline.audit_formats import run_format_audit

        return run_format_audit(lake.root, customer_ids, workers, names)
    needles = gather_needles(lake, customer_ids, workers)
    patterns = needles.text_patterns(names)
    raw = raw_needles(needles, names)
    anywhere = column_needles(needles, patterns)
    table_files = {f.path for t in lake.tables() for f in lake.files(t)}
    visible = table_files | view_files(lake)
    report = AuditReport(str(lake.root), int(len(customer_ids)))
    if lake.manifest is not None and lake.manifest.get("generator") == "voicescrub":
        n = lake.manifest["config"]["n_customers"]
        ids = np.asarray(customer_ids, np.int64)
        report.never_in_lake = int(np.count_nonzero((ids < 1) | (ids > n)))

    def one(p: Path) -> list[Finding]:
        rel = p.relative_to(lake.root).as_posix()
        if not is_parquet(p):
            return audit_raw(p, rel, raw, table_reader(anywhere), report.unreadable)
        if rel in table_files:  # the contract's columns: the keys are where their names say
            return parquet_or_bytes(
                p, rel, raw, report.unreadable,
                lambda: audit_parquet(p, rel, needles, patterns, True))
        return parquet_or_bytes(
            p, rel, raw, report.unreadable,
            lambda: audit_any_parquet(p, rel, anywhere, rel in visible, journal_key_kind(rel)))

    return read_every_file(lake.root, one, report, workers)


def parquet_or_bytes(path: Path, rel: str, raw: RawNeedles, unreadable: list[str],
                     read: Callable[[], list[Finding]]) -> list[Finding]:
    """A Parquet file through its columns; one that cannot be read (damaged) as raw bytes,
    and listed as unreadable (its compressed pages hide what a byte search would find)."""
    try:
        return read()
    except Exception as e:  # noqa: BLE001 - ArrowInvalid, OSError, …: a damaged file
        unreadable.append(f"{rel}: not readable as Parquet ({_reason(e)}); read as bytes")
        return audit_raw(path, rel, raw, None, unreadable)


def view_files(lake: Lake) -> set[str]:
    """Files (relative to the root) the query views read: a query returns their rows whether
    the manifest lists them or not. The views' own patterns (queries.views), so the two cannot
    drift, matched as DuckDB's glob matches them: `*` within one path segment, dot files
    included — as pathlib's glob does (and views.py itself, to tell whether a table has files)."""
    if lake.manifest is None or lake.manifest.get("layout") is None:
        return set()  # a lake described by a lineage file only: no views
    from generators.schemas import TABLES
    from queries.views import file_pattern

    layout = lake.manifest["layout"]
    return {p.relative_to(lake.root).as_posix() for t, spec in TABLES.items()
            for p in lake.root.glob(file_pattern(t, spec.kind, layout))}


def _result_awake(future: Future) -> list[Finding]:
    """A future's result, waited for in short naps: a signal the kernel hands to a worker
    thread never wakes a main thread blocked on a lock, so Ctrl-C would wait for the file."""
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            continue


def read_every_file(root: Path, one: Callable[[Path], list[Finding]], report: AuditReport,
                    workers: int) -> AuditReport:
    """Run `one` on every file under the root (in parallel) into the report."""
    files = list(walk(root))

    with unpack_dir() as area:  # its copies of archive members, removed however it ends
        def guarded(p: Path) -> list[Finding]:
            bind(area)
            try:
                check_cancelled()  # an interrupted audit starts no more files
                return one(p)
            finally:
                bind(None)

        pool = ThreadPoolExecutor(max(1, workers))
        try:
            for future in [pool.submit(guarded, p) for p in files]:
                report.findings += _result_awake(future)
        except BaseException:
            area.cancelled.set()  # the workers stop at their next read, before the copies go
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    report.files_read = len(files)
    report.bytes_read = sum(p.stat().st_size for p in files)
    report.findings.sort(key=lambda f: (f.possible, not f.visible, f.path, f.column))
    return report
