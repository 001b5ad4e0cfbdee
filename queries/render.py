"""Showing and writing query results: a rich table for people, csv/json/parquet for tools."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

FORMATS = ("table", "csv", "json", "parquet")
DEFAULT_ROWS = 50  # rows a table shows unless --limit says otherwise
MAX_CELL = 60  # characters of one cell in a table
_COPY_OPTIONS = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json",
                 "parquet": "FORMAT parquet, COMPRESSION zstd"}
_NUMERIC = ("INT", "FLOAT", "DOUBLE", "DECIMAL", "REAL", "NUMERIC")


def cell(value: object) -> str:
    """One value as table text: NULL spelled out, bytes summarised, long text cut."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value):,} bytes>"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):  # microseconds are noise on screen
        text = value.isoformat(sep=" ", timespec="seconds")
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def show(rel: duckdb.DuckDBPyRelation, console: Console, rows: int | None = DEFAULT_ROWS,
         more: str = "raise --limit, or use --format csv") -> int:
    """Print the first `rows` rows (None: all) of a result as a table; returns the rows shown."""
    data = (rel if rows is None else rel.limit(rows + 1)).fetchall()
    rows = len(data) if rows is None else rows
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, dtype in zip(rel.columns, rel.types, strict=True):
        kind = str(dtype).upper()
        numeric = any(k in kind for k in _NUMERIC)
        # Numbers and instants stay on one line; text wraps when the screen is narrow.
        atomic = numeric or kind.startswith(("DATE", "TIME", "BOOL", "UUID"))
        table.add_column(f"{name}\n[dim]{str(dtype).lower()}[/]", no_wrap=atomic,
                         justify="right" if numeric else "left")
    for row in data[:rows]:
        table.add_row(*(cell(v) for v in row))
    # Rich drops columns that do not fit: never narrower than the table's minimum. Off a
    # terminal (a pipe, a file) nothing needs wrapping at all: one line per row.
    m = Measurement.get(console, console.options.update_width(1 << 16), table)
    saved = console.width
    console.width = max(saved, m.minimum) if console.is_terminal else m.maximum
    try:
        console.print(table, crop=False)
    finally:
        console.width = saved
    shown = min(len(data), rows)
    note = f" (more rows exist: {more})" if len(data) > rows else ""
    console.print(f"[dim]{shown} row{'s' * (shown != 1)}{note}[/]", highlight=False)
    return shown


def write(con: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, fmt: str,
          output: Path | None) -> None:
    """Write a whole result as csv / json (one object per line) / parquet, to a file or stdout.

    DuckDB writes it (COPY): values are spelled as DuckDB spells them, and a large result
    goes to disk in chunks rather than through Python objects."""
    if fmt not in _COPY_OPTIONS:
        raise ValueError(f"unknown format {fmt!r}")
    view = "_voicescrub_result"
    rel.to_view(view, replace=True)
    try:
        if output is not None:
            con.execute(f"COPY {view} TO '{_escape(output)}' ({_COPY_OPTIONS[fmt]})")
            return
        # stdout may be a Python object (a pipe, a test runner): go through a temp file.
        with tempfile.TemporaryDirectory(prefix="voicescrub-") as tmp:
            path = Path(tmp) / f"result.{fmt}"
            con.execute(f"COPY {view} TO '{_escape(path)}' ({_COPY_OPTIONS[fmt]})")
            with path.open(encoding="utf-8") as f:
                shutil.copyfileobj(f, sys.stdout)
            sys.stdout.flush()
    finally:
        con.execute(f"DROP VIEW IF EXISTS {view}")


def _escape(path: Path) -> str:
    return str(path).replace("'", "''")
