"""DuckDB views over a voicescrub lake: one view per table, replicas hidden.

For every table `t`:
- `t` holds the primary rows only (a fact row stored in its origin region), with a `region`
  column and, for facts, a `date` column (see below); the path columns `origin`/`bucket` are
  dropped, so nothing is counted twice.
- `t_all` (facts only) holds every stored copy, with `origin`, the layout's path column and an
  `is_replica` flag: what an erasure has to reach.

`date` is the local calendar day of the recording in its origin region (what the date layout
partitions by and what usage_daily rolls up). In the date layout it is the path partition (so
filters on it prune files) for every fact; in the bucket layout it is usage_daily's own column,
or derived from the row's timestamp and the origin's UTC offset for recordings, actions and
skill_events. audio and transcripts carry no time column: in the bucket layout they have no
`date` (join recordings on recording_id).

Views read the files through globs with absolute paths, so a database file holding them works
from any directory and sees files added or rewritten later. A table with no file at all gets an
empty view with the contract's columns (rewrite the views once the table has files).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from generators.lake import read_manifest
from generators.population import UTC_OFFSET_H  # the generator's fixed offsets (no DST)
from generators.schemas import TABLES

# Hive partition types by table kind and layout, explicit rather than guessed from the values;
# DuckDB also refuses a hive_type the paths do not have, hence one set per layout.
HIVE_TYPES = {
    "dimension": {"region": "VARCHAR"},
    "date": {"region": "VARCHAR", "origin": "VARCHAR", "date": "DATE"},
    "bucket": {"region": "VARCHAR", "origin": "VARCHAR", "bucket": "INTEGER"},
}
# The timestamp that dates a fact row in the bucket layout (no date partition to read).
TIME_COLUMN = {"recordings": "started_at", "actions": "executed_at",
               "skill_events": "occurred_at"}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def file_pattern(table: str, kind: str, layout: str) -> str:
    """The files of a table, relative to the lake root."""
    if kind == "dimension":
        return f"{table}/region=*/*.parquet"
    leaf = "date=*" if layout == "date" else "bucket=*"
    return f"{table}/region=*/origin=*/{leaf}/*.parquet"


def _source(lake: Path, table: str, kind: str, layout: str) -> str:
    types = HIVE_TYPES["dimension" if kind == "dimension" else layout]
    files = _quote(f"{lake}/{file_pattern(table, kind, layout)}")
    if not any("=" in part for part in lake.parts):
        hive = ", ".join(f"{_quote(k)}: {v}" for k, v in types.items())
        return f"read_parquet({files}, hive_partitioning = true, hive_types = {{{hive}}})"
    # DuckDB's Hive partitioning reads every `key=value` directory of the absolute path, so a
    # lake stored under, say, `.../region=zz/` would show region zz on every row (and a
    # `run=3` parent would add a column). The partition columns are then cut from the end of
    # each file's path instead: slower than Hive columns, but filters on them still prune
    # files: DuckDB evaluates filters on its `filename` column before opening a file (only
    # under that name: renamed with `filename = 'x'`, nothing is pruned; no table of the
    # contract has a column of that name).
    tail = "".join(f"/{k}=([^/]*)" for k in types) + "/[^/]*$"
    cols = ", ".join(f"CAST(regexp_extract(filename, {_quote(tail)}, {i}) AS {t}) AS {k}"
                     for i, (k, t) in enumerate(types.items(), start=1))
    return (f"(SELECT * EXCLUDE (filename), {cols}\n FROM read_parquet({files}, "
            f"hive_partitioning = false, filename = true))")


def _local_date(column: str, regions: list[str]) -> str:
    """SQL for the local day of a UTC timestamp in the row's origin region."""
    cases = " ".join(f"WHEN {_quote(r)} THEN {UTC_OFFSET_H.get(r, 0)}" for r in regions)
    return (f"CAST(timezone('UTC', {column}) + to_hours(CASE origin {cases} ELSE 0 END) "
            f"AS DATE)")


def _empty_select(table: str, layout: str, kind: str) -> tuple[str, str]:
    """SELECTs with the right columns and no rows, for a table without files."""
    schema = TABLES[table].file_schema(layout)
    types = duckdb.connect().from_arrow(schema.empty_table()).types
    cols = [f"CAST(NULL AS {t}) AS {n}" for n, t in zip(schema.names, types, strict=True)
            if n != "date"]
    cols.append("CAST(NULL AS VARCHAR) AS region")
    if kind == "dimension":
        return f"SELECT {', '.join(cols)} LIMIT 0", ""
    if layout == "date" or table in TIME_COLUMN or table == "usage_daily":
        cols.append("CAST(NULL AS DATE) AS date")
    extra = ["CAST(NULL AS VARCHAR) AS origin"]
    if layout == "bucket":
        extra.append("CAST(NULL AS INTEGER) AS bucket")
    extra.append("CAST(NULL AS BOOLEAN) AS is_replica")
    return (f"SELECT {', '.join(cols)} LIMIT 0",
            f"SELECT {', '.join(cols + extra)} LIMIT 0")


def _fact_selects(lake: Path, table: str, layout: str, regions: list[str],
                  src: str | None = None) -> tuple[str, str]:
    src = src or _source(lake, table, "fact", layout)
    if layout == "date":
        base = "* EXCLUDE (region, origin, date), region, date"
        path_cols = "origin"
    else:
        path_cols = "origin, bucket"
        if table == "usage_daily":
            base = "* EXCLUDE (region, origin, bucket, date), region, date"
        elif table in TIME_COLUMN:
            date = _local_date(TIME_COLUMN[table], regions)
            base = f"* EXCLUDE (region, origin, bucket), region, {date} AS date"
        else:
            base = "* EXCLUDE (region, origin, bucket), region"
    primary = f"SELECT {base}\nFROM {src}\nWHERE region = origin"
    everything = (f"SELECT {base}, {path_cols}, region <> origin AS is_replica\nFROM {src}")
    return primary, everything


def view_statements(lake: Path, sources: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(view name, CREATE VIEW statement) for every table of the lake. `sources` replaces the
    Parquet globs by other relations with the same columns (a table format's snapshot)."""
    lake = Path(lake).resolve()
    manifest = read_manifest(lake)
    layout, regions = manifest["layout"], manifest["regions"]
    out = []
    for table, spec in TABLES.items():
        src = (sources or {}).get(table)
        has_files = src is not None or any(lake.glob(file_pattern(table, spec.kind, layout)))
        if not has_files:
            primary, everything = _empty_select(table, layout, spec.kind)
        elif spec.kind == "dimension":
            primary = (f"SELECT * EXCLUDE (region), region\n"
                       f"FROM {src or _source(lake, table, 'dimension', layout)}")
            everything = ""
        else:
            primary, everything = _fact_selects(lake, table, layout, regions, src)
        out.append((table, f"CREATE OR REPLACE VIEW {table} AS\n{primary};"))
        if everything:
            out.append((f"{table}_all",
                        f"CREATE OR REPLACE VIEW {table}_all AS\n{everything};"))
    return out


def view_sql(lake: Path) -> str:
    """The CREATE VIEW statements for `lake`, as one SQL script."""
    if read_manifest(Path(lake)).get("format"):
        raise ValueError(f"{lake} is a {read_manifest(Path(lake))['format']} lake: its views "
                         "read through the format in-process (voicescrub query / shell), not "
                         "from a SQL script")
    header = f"-- voicescrub views over {Path(lake).resolve()}\n"
    return header + "\n\n".join(sql for _, sql in view_statements(lake)) + "\n"


class ViewsError(ValueError):
    """The views cannot be made as asked (the manifest itself is fine)."""


def connect(lake: Path, db: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (in memory, or the database file `db`) with the lake's views."""
    manifest = read_manifest(Path(lake))  # before creating any db file
    if manifest.get("format") and db != ":memory:":
        raise ViewsError(f"{lake} is a {manifest['format']} lake: its views read through the "
                         "format in-process, a database file could not reopen them (use "
                         "`voicescrub query` or `voicescrub shell` on it)")
    statements = None if manifest.get("format") else view_statements(lake)
    con = duckdb.connect(db)
    # The lake stores UTC instants: show them as such, whatever the machine's time zone.
    con.execute("SET TimeZone = 'UTC'")
    if statements is None:
        from pipeline.formats import FormatLake, get

        flake = FormatLake.open(Path(lake).resolve())
        fmt = get(flake.format)
        sources = {t: fmt.duckdb_source(flake, con, t) for t in flake.manifest["tables"]}
        statements = view_statements(lake, sources)
    for _, sql in statements:
        con.execute(sql)
    return con

