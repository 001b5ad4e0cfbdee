"""The audit: read every file under the lake root and report any trace of the given customers.

Parquet files are read through their columns: key columns (customer, device, recording ids,
skill pseudonyms) by exact match, text columns for the customers' emails and phone numbers, and
their full names as *possible* mentions (names are not unique, they never fail the audit). Any
other file — journals, logs, temp files, manifests, receipts — is read as raw bytes.

A trace in a file that the current table version references is *visible* (a query returns it);
a trace anywhere else is *physically present* though hidden. Copy-on-write must leave neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lake import Lake
from pipeline.plan import key_array, match

KEY_COLUMNS = ("customer_id", "device_id", "recording_id", "skill_user_id")
RAW_CHUNK = 32 << 20


@dataclass
class Finding:
    path: str
    column: str  # column name, or "(bytes)" for a non-Parquet file
    kind: str  # customer_id | device_id | recording_id | skill_user_id | email | phone | name
    rows: int  # rows (Parquet) or occurrences (raw bytes)
    visible: bool  # in a file the current table version references
    possible: bool = False  # a name mention: reported apart, never fails the audit


@dataclass
class AuditReport:
    lake: str
    customers: int
    files_read: int = 0
    bytes_read: int = 0
    findings: list[Finding] = field(default_factory=list)

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
        return not self.residue

    def to_json(self) -> dict:
        return {"lake": self.lake, "customers": self.customers, "files_read": self.files_read,
                "bytes_read": self.bytes_read, "clean": self.clean,
                "logically_visible_rows": self.visible_rows,
                "physically_present_hidden": self.hidden_rows,
                "possible_name_mentions": sum(f.rows for f in self.findings if f.possible),
                "findings": [asdict(f) for f in self.findings]}


@dataclass
class Needles:
    keys: dict[str, pa.Array]
    emails: list[str]
    phones: list[str]
    names: list[str]

    def text_patterns(self, names: bool = True) -> dict:
        """What text columns are searched with: exact-token sets for emails and phones
        (phones without separators), a regex of full names for possible mentions."""
        sets = {}
        if self.emails:
            sets["email"] = pa.array(sorted(set(self.emails)), pa.string())
        if self.phones:
            stripped = {re.sub(r"[ ().-]", "", p) for p in self.phones}
            sets["phone"] = pa.array(sorted(stripped), pa.string())
        return {"sets": sets, "name": _alternation(self.names) if names else None}


def _alternation(words: list[str]) -> re.Pattern | None:
    words = sorted({w for w in words if w}, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in words)) if words else None


def gather_needles(lake: Lake, customer_ids: np.ndarray, workers: int = 2) -> Needles:
    """What to look for: the generator's ground truth when the lake is a voicescrub lake,
    plus whatever the lake still links to these customers."""
    from pipeline.resolve import resolve_keys

    keys = resolve_keys(lake, customer_ids, workers)
    return needles_from(lake.manifest, customer_ids, keys,
                        lambda ids: _pii_in_lake(lake, ids))


def needles_from(manifest: dict | None, customer_ids: np.ndarray, keys: dict[str, pa.Array],
                 pii_of: Callable[[pa.Array | None], dict[str, list[str]]]) -> Needles:
    """The resolved keys, widened by the generator's ground truth (voicescrub lakes), and the
    customers' PII (ground truth and what the customers table still holds)."""
    emails: list[str] = []
    phones: list[str] = []
    names: list[str] = []
    if manifest is not None and manifest.get("generator") == "voicescrub":
        from generators.truth import config_from_manifest, identifiers

        ids = identifiers(config_from_manifest(manifest), customer_ids)
        for kind, arr in ids.keys().items():
            if kind in keys:
                keys[kind] = key_array(pa.concat_arrays([keys[kind].cast(arr.type), arr]))
            else:
                keys[kind] = arr
        emails, phones, names = ids.email, ids.phone, ids.full_name
    pii = pii_of(keys.get("customer_id"))
    return Needles(keys, sorted(set(emails) | set(pii["email"])),
                   sorted(set(phones) | set(pii["phone"])),
                   sorted(set(names) | set(pii["full_name"])))


def _pii_in_lake(lake: Lake, ids: pa.Array | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"email": [], "phone": [], "full_name": []}
    if ids is None:
        return out
    for f in lake.files("customers") if "customers" in lake.tables() else []:
        schema = pq.read_schema(lake.root / f.path)
        cols = [c for c in ("customer_id", *out) if c in schema.names]
        if "customer_id" not in cols:
            continue
        t = pq.read_table(lake.root / f.path, columns=cols)
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
                  visible: bool) -> list[Finding]:
    out = []
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    text, keys = [], []
    for name in schema.names:
        typ = schema.field(name).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ) or \
                pa.types.is_string_view(typ):
            text.append(name)
        if name in needles.keys:
            keys.append(name)
    columns = list(dict.fromkeys(keys + text))
    if not columns:
        return out
    for i in range(pf.metadata.num_row_groups):
        rg = pf.read_row_group(i, columns=columns)
        for name in columns:
            col = rg[name].combine_chunks()
            if pa.types.is_string_view(col.type):  # delta-rs writes views
                col = col.cast(pa.string())
            if name in text:
                out += _text_findings(col, rel, name, patterns, visible)
            if name in keys:
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                n = pc.sum(match(col, needles.keys[name])).as_py() or 0
                if n:
                    out.append(Finding(rel, name, name, n, visible))
    return _merge(out)


def _rows_containing(col: pa.Array, chars: bytes) -> np.ndarray:
    """Rows whose bytes contain any of `chars`: a scan of the data buffer with numpy,
    mapped back to rows through the offsets (no per-value call)."""
    if len(col) == 0:
        return np.zeros(0, np.int64)
    wide = pa.types.is_large_string(col.type)
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
    if patterns.get("name") is not None:
        hits = pc.fill_null(pc.match_substring_regex(col, patterns["name"].pattern), False)
        masks["name"] = hits.to_numpy(zero_copy_only=False)
    return masks


def _text_findings(col: pa.Array, rel: str, name: str, patterns: dict,
                   visible: bool) -> list[Finding]:
    if pa.types.is_dictionary(col.type):
        # search each distinct value once, then count the rows that use a hit value
        masks = _text_masks(col.dictionary, patterns)
        idx = col.indices.to_numpy(zero_copy_only=False)
        valid = col.indices.is_valid().to_numpy(zero_copy_only=False)
        counts = {k: int(m[idx[valid]].sum()) for k, m in masks.items()}
    else:
        counts = {k: int(m.sum()) for k, m in _text_masks(col, patterns).items()}
    return [Finding(rel, name, k, n, visible, possible=k == "name")
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
    "long_id": re.compile(rb"(?<![\d.])-?\d{10,20}(?!\d)"),
    # `customer_id": 4`, also inside JSON held in a JSON string (`customer_id\\":4`)
    "customer_id": re.compile(rb"customer_id[\\\"':= ]{1,5}(\d+)(?!\d)"),
    "email": re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "token": re.compile(rb"[\w.:-]{12,}"),
    "phone": re.compile(rb"\+\d[\d ()-]{5,20}\d"),
}


@dataclass
class RawNeedles:
    """Needles as sets: raw bytes are tokenized once, then each token is a set lookup."""
    ints: dict[str, set[int]]  # recording_id / device_id
    customer_ids: set[int]
    strings: dict[str, set[str]]  # skill_user_id / email / phone


def raw_needles(needles: Needles) -> RawNeedles:
    ints = {k: set(needles.keys[k].to_pylist()) for k in ("recording_id", "device_id")
            if k in needles.keys}
    cust = set(needles.keys["customer_id"].to_pylist()) if "customer_id" in needles.keys \
        else set()
    sk = needles.keys.get("skill_user_id")
    strings = {"skill_user_id": set(sk.to_pylist()) if sk is not None else set(),
               "email": set(needles.emails), "phone": set(needles.phones)}
    return RawNeedles(ints, cust, strings)


def raw_counts(data: bytes, needles: RawNeedles) -> dict[str, int]:
    """kind -> occurrences of the needles among the tokens of `data`."""
    counts: dict[str, int] = {}

    def add(kind: str, n: int) -> None:
        if n:
            counts[kind] = counts.get(kind, 0) + n

    longs = [int(m) for m in TOKENS["long_id"].findall(data)]
    for kind, values in needles.ints.items():
        add(kind, sum(v in values for v in longs))
    add("customer_id", sum(int(m) in needles.customer_ids
                           for m in TOKENS["customer_id"].findall(data)))
    tokens = {m.decode(errors="replace") for m in TOKENS["token"].findall(data)}
    add("skill_user_id", len(tokens & needles.strings["skill_user_id"]))
    emails = [m.decode(errors="replace") for m in TOKENS["email"].findall(data)]
    add("email", sum(e in needles.strings["email"] for e in emails))
    phones = [m.decode(errors="replace") for m in TOKENS["phone"].findall(data)]
    add("phone", sum(p in needles.strings["phone"] for p in phones))
    return counts


def audit_raw(path: Path, rel: str, needles: RawNeedles) -> list[Finding]:
    counts: dict[str, int] = {}
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(RAW_CHUNK):
            data = tail + chunk
            for k, n in raw_counts(data, needles).items():
                counts[k] = counts.get(k, 0) + n
            # keep an overlap so a needle cut by the chunk boundary is still seen (it may then
            # count twice: a count here only has to be non-zero to fail the audit)
            tail = data[-256:]
    return [Finding(rel, "(bytes)", k, n, False) for k, n in counts.items()]


def run_audit(lake: Lake, customer_ids: np.ndarray, workers: int = 2,
              names: bool = True) -> AuditReport:
    """Audit every file under the root. names=False skips the possible-mention search of
    full names (the costliest part, and never residue)."""
    if lake.manifest is not None and lake.manifest.get("format"):
        from pipeline.audit_formats import run_format_audit

        return run_format_audit(lake.root, customer_ids, workers, names)
    needles = gather_needles(lake, customer_ids, workers)
    patterns = needles.text_patterns(names)
    raw = raw_needles(needles)
    referenced = {f.path for t in lake.tables() for f in lake.files(t)}
    report = AuditReport(str(lake.root), int(len(customer_ids)))

    def one(p: Path) -> list[Finding]:
        rel = p.relative_to(lake.root).as_posix()
        if is_parquet(p):
            return audit_parquet(p, rel, needles, patterns, rel in referenced)
        return audit_raw(p, rel, raw)

    return read_every_file(lake.root, one, report, workers)


def read_every_file(root: Path, one: Callable[[Path], list[Finding]], report: AuditReport,
                    workers: int) -> AuditReport:
    """Run `one` on every file under the root (in parallel) into the report."""
    files = list(walk(root))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for found in pool.map(one, files):
            report.findings += found
    report.files_read = len(files)
    report.bytes_read = sum(p.stat().st_size for p in files)
    report.findings.sort(key=lambda f: (f.possible, not f.visible, f.path, f.column))
    return report
