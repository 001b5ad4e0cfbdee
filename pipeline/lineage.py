"""Lineage as data: how an erased subject reaches every table of a lake.

A spec names the subject key (what a request lists), the derived keys (each read from a mapping
table: rows whose `via` column holds a resolved key give their `column` values), and per table
the columns whose values, if resolved, erase the row. The voice lake's spec is the default; any
Hive-partitioned Parquet lake can be scrubbed by writing one (`--lineage FILE`, JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class LineageError(ValueError):
    """A lineage spec that cannot be used: reported before anything is touched."""


@dataclass(frozen=True)
class DerivedKey:
    name: str  # key kind, e.g. "recording_id"
    table: str  # mapping table that holds it
    column: str  # column of the mapping table with the derived value
    via: str  # key kind whose values select rows of the mapping table
    via_column: str  # column of the mapping table holding the `via` key


@dataclass(frozen=True)
class EraseRule:
    table: str
    column: str  # column of the table
    key: str  # key kind whose resolved values erase the row


@dataclass(frozen=True)
class Lineage:
    subject: str
    derived: tuple[DerivedKey, ...]
    rules: tuple[EraseRule, ...]

    @property
    def tables(self) -> list[str]:
        """Tables in erase order: a mapping table goes after every table its keys reach."""
        mapping = {d.table for d in self.derived}
        names = list(dict.fromkeys(r.table for r in self.rules))
        return [t for t in names if t not in mapping] + [t for t in names if t in mapping]

    def rules_for(self, table: str) -> list[EraseRule]:
        return [r for r in self.rules if r.table == table]

    def key_kinds(self) -> list[str]:
        return [self.subject, *(d.name for d in self.derived)]

    def to_json(self) -> dict:
        return {
            "subject": self.subject,
            "keys": {d.name: {"table": d.table, "column": d.column, "via": d.via,
                              "via_column": d.via_column} for d in self.derived},
            "tables": {t: {r.column: r.key for r in self.rules_for(t)}
                       for t in dict.fromkeys(r.table for r in self.rules)},
        }


def from_json(spec: dict) -> Lineage:
    """Parse and validate a spec; every error names what to fix."""
    try:
        subject = spec["subject"]
        keys = spec.get("keys", {})
        tables = spec["tables"]
    except (KeyError, TypeError) as e:
        raise LineageError(f"lineage spec needs 'subject' and 'tables' (missing {e})") from None
    derived = []
    known = {subject}
    pending = dict(keys)
    while pending:  # resolve in dependency order; a cycle or unknown `via` is an error
        ready = [k for k, v in pending.items() if v.get("via", subject) in known]
        if not ready:
            raise LineageError(f"lineage keys {sorted(pending)} depend on unknown keys or on "
                               "each other in a cycle")
        for k in ready:
            v = pending.pop(k)
            try:
                derived.append(DerivedKey(k, v["table"], v.get("column", k),
                                          v.get("via", subject), v.get("via_column",
                                                                       v.get("via", subject))))
            except KeyError as e:
                raise LineageError(f"lineage key {k!r} needs {e}") from None
            known.add(k)
    rules = []
    for table, cols in tables.items():
        if not isinstance(cols, dict) or not cols:
            raise LineageError(f"lineage table {table!r} must map columns to key kinds")
        for column, key in cols.items():
            if key not in known:
                raise LineageError(f"lineage table {table!r} column {column!r} uses unknown key "
                                   f"{key!r} (known: {', '.join(sorted(known))})")
            rules.append(EraseRule(table, column, key))
    return Lineage(subject, tuple(derived), tuple(rules))


def load(path: Path) -> Lineage:
    try:
        return from_json(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise LineageError(f"lineage file {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise LineageError(f"lineage file {path} is not valid JSON: {e}") from None


VOICE_LAKE = from_json({
    "subject": "customer_id",
    "keys": {
        "device_id": {"table": "devices", "column": "device_id", "via": "customer_id"},
        "recording_id": {"table": "recordings", "column": "recording_id", "via": "customer_id"},
        "skill_user_id": {"table": "skill_links", "column": "skill_user_id",
                          "via": "customer_id"},
    },
    "tables": {
        "customers": {"customer_id": "customer_id"},
        "devices": {"customer_id": "customer_id"},
        "recordings": {"customer_id": "customer_id"},
        "audio": {"customer_id": "customer_id"},
        "transcripts": {"customer_id": "customer_id"},
        "actions": {"recording_id": "recording_id"},
        "skill_links": {"customer_id": "customer_id"},
        "skill_events": {"skill_user_id": "skill_user_id"},
        "usage_daily": {"customer_id": "customer_id"},
    },
})
