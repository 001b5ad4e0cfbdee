"""A small SQL shell over the lake's views (the DuckDB CLI binary is not available here).

Statements end with ';' and may span lines; dot commands (.tables, .schema, .maxrows, .help,
.quit) stand alone on a line. It reads until EOF, so it can be scripted through stdin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TextIO

import duckdb
from rich.console import Console
from rich.markup import escape

from queries.render import DEFAULT_ROWS, show

CANCEL = "\x03"  # a line meaning: drop the statement being typed (^C at the prompt)
HELP = """\
.tables           list the views (and any table you created)
.schema [NAME]    columns of a view, or the CREATE statement of every view
.maxrows N        rows shown per result (now {rows})
.help             this help
.quit / .exit     leave (EOF too)
SQL statements end with ';' and may span lines."""


class Shell:
    def __init__(self, con: duckdb.DuckDBPyConnection, console: Console, err: Console,
                 rows: int = DEFAULT_ROWS) -> None:
        self.con, self.console, self.err, self.rows = con, console, err, rows
        self.errors = 0

    def run(self, lines: Iterator[str]) -> int:
        """Execute everything `lines` holds; returns the number of failed statements."""
        buffer = ""
        for line in lines:
            if line == CANCEL:
                buffer = ""
                continue
            if not buffer and line.strip().startswith("."):
                if not self.command(line.strip()):
                    return self.errors
                continue
            buffer += line if line.endswith("\n") else line + "\n"
            if buffer.rstrip().endswith(";"):
                self.execute(buffer)
                buffer = ""
        if buffer.strip():  # a last statement without ';' at EOF still runs
            self.execute(buffer)
        return self.errors

    def execute(self, sql: str) -> None:
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as e:
            self._error(e)
            return
        for statement in statements:
            try:
                rel = self.con.sql(statement.query)
                if rel is not None:
                    show(rel, self.console, self.rows, more=".maxrows N shows more")
            except duckdb.Error as e:
                self._error(e)
                return

    def command(self, line: str) -> bool:
        """Run a dot command; False means leave the shell."""
        name, _, arg = line.partition(" ")
        arg = arg.strip().rstrip(";")
        if name in (".quit", ".exit", ".q"):
            return False
        if name == ".help":
            self.console.print(HELP.format(rows=self.rows), highlight=False, markup=False)
        elif name == ".tables":
            self.execute("SELECT name FROM (SHOW TABLES) ORDER BY name;")
        elif name == ".schema" and arg:
            self.execute(f"DESCRIBE {arg};")
        elif name == ".schema":  # whole statements: a table would cut them
            for (sql,) in self.con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal "
                                           "ORDER BY view_name").fetchall():
                self.console.print(sql, markup=False, highlight=False, soft_wrap=True)
        elif name == ".maxrows" and arg.isdigit() and int(arg) > 0:
            self.rows = int(arg)
        else:
            self.err.print(f"[red]unknown or malformed command {escape(line)!r}; "
                               "try .help[/]", highlight=False)
            self.errors += 1
        return True

    def _error(self, e: duckdb.Error) -> None:
        self.errors += 1
        self.err.print(f"[bold red]Error:[/] {escape(str(e))}", highlight=False)


def stdin_lines(stream: TextIO, interactive: bool, console: Console) -> Iterator[str]:
    """Lines of input: with prompts and line editing on a terminal, plain lines otherwise."""
    if not interactive:
        yield from stream
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (gives input() history and editing)
    pending = False  # inside a statement: show the continuation prompt
    while True:
        try:
            line = input("       ...> " if pending else "voicescrub> ")
        except EOFError:
            console.print()
            return
        except KeyboardInterrupt:  # ^C drops the statement being typed, like most shells
            console.print("^C")
            pending = False
            yield CANCEL
            continue
        text = line.strip()
        if text and (pending or not text.startswith(".")):
            pending = not text.endswith(";")
        yield line
