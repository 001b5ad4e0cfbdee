"""Intake of an erasure request: a file of customer ids or ids on the command line.

Everything is checked before the lake is touched; duplicates are folded.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

_MAX_ID = 2**63 - 1
# requests come from other systems, whose clocks may run a little ahead of this one
_CLOCK_SKEW = dt.timedelta(minutes=5)


class RequestError(ValueError):
    """A malformed erasure request: reported on one line, nothing touched."""


@dataclass(frozen=True)
class ErasureRequest:
    ids: np.ndarray  # sorted, unique, int64
    requested_at: dt.datetime  # earliest request time (for the persistence latency)
    source: str
    duplicates: int  # ids folded because they were listed more than once

    def __len__(self) -> int:
        return len(self.ids)


def parse_ids(text: str) -> ErasureRequest:
    """Ids from the command line: '1,2,3'."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise RequestError("--ids is empty: give at least one customer id")
    return _build(pa.array(parts, pa.string()), None, "--ids")


def read_request(path: Path) -> ErasureRequest:
    """A CSV, Parquet or JSON-lines file with a customer_id column (and optional
    requested_at)."""
    path = Path(path)
    if not path.exists():
        raise RequestError(f"request file {path} does not exist")
    if path.is_dir():
        raise RequestError(f"request file {path} is a directory")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if rows and not all(isinstance(r, dict) for r in rows):
                raise RequestError(f"{path}: every JSON line must be an object with customer_id")
            table = pa.Table.from_pylist(rows) if rows else pa.table({})
        elif suffix in (".csv", ".txt"):
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={"customer_id": pa.string()}))
        else:
            raise RequestError(f"{path}: unknown request format {suffix!r} "
                               "(use .csv, .parquet or .jsonl)")
    except RequestError:
        raise
    except (pa.ArrowInvalid, json.JSONDecodeError, UnicodeDecodeError, OverflowError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RequestError(f"{path}: cannot be read as a request: {first}") from None
    if "customer_id" not in table.column_names:
        raise RequestError(f"{path} has no customer_id column "
                           f"(columns: {', '.join(table.column_names) or 'none'})")
    if table.num_rows == 0:
        raise RequestError(f"{path} lists no customer ids")
    requested = table["requested_at"] if "requested_at" in table.column_names else None
    return _build(table["customer_id"], requested, str(path))


def _iso_timestamps(requested: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    """requested_at written as ISO 8601 forms Arrow's cast does not take (no seconds, e.g.
    `2026-11-20 10:00`); a request file is small, so value by value."""
    out = []
    for v in requested.to_pylist():
        try:
            out.append(None if v is None else dt.datetime.fromisoformat(str(v).strip()))
        except ValueError:
            raise RequestError(f"{source}: requested_at {v!r} is not a timestamp") from None
    return pa.array([t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC) for t in out],
                    pa.timestamp("us", tz="UTC"))


def _build(column: pa.ChunkedArray | pa.Array, requested: pa.ChunkedArray | None,
           source: str) -> ErasureRequest:
    if column.null_count:
        raise RequestError(f"{source}: {column.null_count} empty customer_id value(s)")
    if pa.types.is_integer(column.type):
        if pa.types.is_unsigned_integer(column.type) and len(column) and \
                pc.max(column).as_py() > _MAX_ID:
            raise RequestError(f"{source}: customer_id {pc.max(column).as_py()} is too large "
                               "(ids are 64-bit signed integers)")
        ids = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        text = np.asarray(column.cast(pa.string()).to_pylist(), dtype=object)
        bad = [t for t in text
               if not (str(t).strip().lstrip("-").isdigit() and str(t).isascii())]
        if bad:
            raise RequestError(f"{source}: customer_id {bad[0]!r} is not an integer")
        values = [int(str(t).strip()) for t in text]
        negative = [v for v in values if v < 0]
        if negative:
            raise RequestError(f"{source}: customer_id {negative[0]} is negative")
        big = [v for v in values if v > _MAX_ID]
        if big:
            raise RequestError(f"{source}: customer_id {big[0]} is too large "
                               "(ids are 64-bit signed integers)")
        ids = np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    if (ids < 0).any():
        raise RequestError(f"{source}: customer_id {int(ids[ids < 0][0])} is negative")
    unique = np.unique(ids)
    when = dt.datetime.now(dt.UTC)
    if requested is not None and requested.null_count < len(requested):
        try:
            ts = requested.cast(pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ts = _iso_timestamps(requested, source)
        stamps = [t if t.tzinfo else t.replace(tzinfo=dt.UTC)
                  for t in ts.to_pylist() if t is not None]
        if max(stamps) > when + _CLOCK_SKEW:
            raise RequestError(f"{source}: requested_at {max(stamps).isoformat()} is in the "
                               "future")
        when = min(min(stamps), when)  # a request stamped a little ahead by another clock
    return ErasureRequest(unique, when, source, len(ids) - len(unique))
