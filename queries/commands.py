"""`voicescrub query | shell | views`: DuckDB over the lake, added to the CLI of pipeline/cli.py."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from pipeline.lake import MANIFEST, LakeError
from queries.named import QueryError, list_queries, load_query, parse_params, run_named
from queries.render import DEFAULT_ROWS, FORMATS, show, write
from queries.shell import Shell, stdin_lines
from queries.views import ViewsError, connect, view_sql

LakeOption = Annotated[Path, typer.Option(help="Lake root (holds _lake.json)")]


def _fail(message: str) -> typer.Exit:
    # Imported late: pipeline.cli imports this module while it is being initialised.
    from pipeline.cli import fail

    return fail(message)


def _first_line(e: Exception) -> str:
    """DuckDB messages span lines (a caret under the SQL): the first says what is wrong."""
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


@contextmanager
def _lake_errors(lake: Path) -> Iterator[None]:
    """One-line errors for a lake that is missing, has no manifest or a broken one."""
    if not lake.exists():
        raise _fail(f"lake {lake} does not exist")
    if not lake.is_dir():
        raise _fail(f"lake {lake} is not a directory")
    try:
        yield
    except FileNotFoundError as e:
        raise _fail(str(e)) from None
    except (ViewsError, LakeError) as e:  # their messages say what is wrong as they stand
        raise _fail(str(e)) from None
    except (ValueError, KeyError) as e:  # a manifest that is not JSON or lacks a field
        raise _fail(f"cannot read the manifest of {lake}: {_first_line(e)}") from None
    except duckdb.Error as e:
        raise _fail(f"cannot create the views: {_first_line(e)}") from None


def _check_region(lake: Path, params: dict) -> None:
    """A named query's $region must be one of the lake's: a typo would give zero rows that
    read like an answer."""
    region = params.get("region")
    if region is None or str(region).upper() == "NULL":
        return
    try:
        regions = json.loads((lake / MANIFEST).read_text()).get("regions")
    except (OSError, ValueError):
        return
    if regions and region not in regions:
        raise QueryError(f"region {region!r} is not one of this lake's regions: "
                         f"{', '.join(regions)}")


def open_lake(lake: Path, db: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """connect() with one-line errors (exit 2) instead of tracebacks."""
    with _lake_errors(lake):
        return connect(lake, db)


def _print_list(console: Console) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("query", style="bold", no_wrap=True)
    table.add_column("description")
    table.add_column("parameters (default)")
    for q in list_queries():
        params = "\n".join(f"{p.name} {p.type} ({p.default or 'NULL'})" for p in q.params)
        table.add_row(q.name, q.summary, params or "-")
    console.print(table)


def _output_format(fmt: str | None, output: Path | None) -> str:
    """The format asked for, or guessed from the output file's suffix, else a table."""
    if fmt is None:
        suffix = output.suffix.lstrip(".").lower() if output else ""
        fmt = {"csv": "csv", "json": "json", "jsonl": "json", "ndjson": "json",
               "parquet": "parquet"}.get(suffix, "table" if output is None else "")
        if not fmt:
            raise _fail(f"cannot tell the format of {output}: give --format csv|json|parquet")
    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise _fail("--format parquet needs --output FILE")
    if fmt == "table" and output is not None:
        raise _fail("--output needs --format csv, json or parquet")
    return fmt


def query(
    name: Annotated[str | None, typer.Argument(help="Named query (see --list)")] = None,
    lake: LakeOption = Path("lake"),
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="NAME=VALUE for the query's $NAME (repeatable)")] = None,
    sql: Annotated[str | None, typer.Option(
        help="Run this SQL against the views instead of a named query")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="table | csv | json (one object per line) | parquet; "
        "default: from --output's suffix, else table")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write csv/json/parquet to FILE instead of stdout")] = None,
    limit: Annotated[int | None, typer.Option(
        min=0, help=f"At most N rows (0 = all); a table shows {DEFAULT_ROWS} by default")]
    = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named queries and exit")]
    = False,
) -> None:
    """Run a named query (or --sql) over the lake's views.

    One view per table holds the primary rows (replicas hidden); <table>_all views hold every
    copy with origin and is_replica. --list shows the named queries and their parameters."""
    console = Console()
    if list_:
        _print_list(console)
        return
    if (name is None) == (sql is None):
        raise _fail("give a query NAME or --sql, not both (voicescrub query --list shows names)"
                    if name else "give a query NAME or --sql (voicescrub query --list)")
    fmt = _output_format(fmt, output)
    try:
        named = load_query(name) if name else None
        params = parse_params(param or [])
    except QueryError as e:
        raise _fail(str(e)) from None
    if output is not None and not output.parent.is_dir():
        raise _fail(f"--output: directory {output.parent} does not exist")
    con = open_lake(lake)
    try:
        if named is not None:
            _check_region(lake, params)
            rel = run_named(con, named.name, params)
        else:  # ad-hoc SQL: --param values are bound as text, cast them in the SQL if needed
            rel = con.sql(sql, params=params or None)
        if rel is None:  # a statement without a result (SET, CREATE ...)
            Console(stderr=True).print("ok", highlight=False)
            return
        if fmt == "table":
            show(rel, console, DEFAULT_ROWS if limit is None else limit or None)
        else:
            write(con, rel.limit(limit) if limit else rel, fmt, output)
    except QueryError as e:
        raise _fail(str(e)) from None
    except duckdb.Error as e:
        raise _fail(_first_line(e)) from None
    finally:
        con.close()


def shell(lake: LakeOption = Path("lake")) -> None:
    """Interactive SQL over the lake's views (DuckDB; .help for commands).

    Statements end with ';'. Reads stdin to EOF, so it can be scripted:
    echo 'SELECT count(*) FROM recordings;' | voicescrub shell --lake DIR"""
    con = open_lake(lake)
    console, err = Console(), Console(stderr=True, soft_wrap=True)
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"voicescrub shell on {lake.resolve()} (DuckDB {duckdb.__version__}): "
                  "views per table, <table>_all with replicas. .help for commands.",
                  highlight=False)
    try:
        errors = Shell(con, console, err).run(stdin_lines(sys.stdin, interactive, console))
    finally:
        con.close()
    if errors and not interactive:  # scripted use: report failure like the DuckDB CLI
        raise typer.Exit(1)


def views(
    lake: LakeOption = Path("lake"),
    db: Annotated[Path | None, typer.Option(
        help="DuckDB database file to write the views into; without it, print their SQL")]
    = None,
) -> None:
    """Write the lake's views into a DuckDB database file, or print their SQL.

    Any DuckDB client can then open the lake: duckdb.connect(FILE).sql('FROM recordings')."""
    if db is None:
        with _lake_errors(lake):
            text = view_sql(lake)
        sys.stdout.write(text)
        return
    if not db.parent.is_dir():
        raise _fail(f"--db: directory {db.parent} does not exist")
    if db.is_dir():
        raise _fail(f"--db {db} is a directory: give a file path")
    if db.exists() and db.stat().st_size:
        with open(db, "rb") as fh:
            header = fh.read(12)
        if header[8:12] != b"DUCK":  # a DuckDB database file's magic bytes
            # DuckDB opens some other files (a CSV) without error and writes nothing to them
            raise _fail(f"--db {db} exists and is not a DuckDB database: give a new path, or "
                        "a DuckDB file to add the views to")
    con = open_lake(lake, str(db))
    n = con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone()[0]
    con.close()
    Console(stderr=True).print(f"wrote {n} views over {lake.resolve()} to {db}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the query commands to the voicescrub CLI."""
    app.command("query")(query)
    app.command("shell")(shell)
    app.command("views")(views)
