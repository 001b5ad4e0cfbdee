"""Named queries: the .sql files of queries/sql, their parameters and how to run them.

A file starts with a comment header:

    -- name: what the query answers (continued on more comment lines)
    --
    -- Parameters:
    --   $customer_id  BIGINT  default 1  the customer
    -- (or "-- Parameters: none")

Parameters use DuckDB's prepared-statement syntax ($name). Values arrive as strings
(`--param k=v`) or Python objects and are cast by DuckDB to the declared type, so every type
DuckDB can cast from text works (dates, timestamps, lists...). `default NULL` binds SQL NULL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

SQL_DIR = Path(__file__).parent / "sql"
_PARAM = re.compile(r"^--\s+\$(\w+)\s+(.+?)\s+default\s+(\S+)\s*(.*)$")
_USED = re.compile(r"\$([A-Za-z_]\w*)")


class QueryError(ValueError):
    """A named query that does not exist or parameters that do not fit it."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # a DuckDB type, e.g. BIGINT, VARCHAR, DATE
    default: str | None  # text cast to `type`; None = SQL NULL
    help: str = ""


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path

    @property
    def summary(self) -> str:
        """The first sentence of the description, capitalised."""
        first = self.description.split(". ")[0].rstrip(".") + "."
        return first[:1].upper() + first[1:]


def _parse(path: Path) -> Query:
    """Read a .sql file's header. Malformed headers raise: they are a bug in the file."""
    text = path.read_text()
    header = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    first = header[0][2:].strip() if header else ""
    name = path.stem
    if not first.startswith(f"{name}:"):
        raise QueryError(f"{path}: the header must start with '-- {name}: <description>'")
    desc_lines = [first[len(name) + 1:].strip()]
    params: list[Param] = []
    in_params = False
    for line in header[1:]:
        body = line[2:].strip()
        if body.lower().startswith("parameters:"):
            in_params = True
        elif in_params and body:
            m = _PARAM.match(line)
            if not m:
                raise QueryError(f"{path}: bad parameter line {line!r}")
            pname, ptype, default, phelp = m.groups()
            params.append(Param(pname, ptype, None if default.upper() == "NULL" else default,
                                phelp))
        elif not in_params and body:
            desc_lines.append(body)
        elif not in_params and desc_lines[-1]:
            desc_lines.append("")
    declared = {p.name for p in params}
    used = set(_USED.findall(text[len("\n".join(header)):]))
    if declared != used:
        raise QueryError(f"{path}: parameters declared {sorted(declared)} but used "
                         f"{sorted(used)}")
    description = " ".join(x for x in desc_lines if x)
    return Query(name, description, tuple(params), text, path)


@cache
def _all() -> dict[str, Query]:
    return {p.stem: _parse(p) for p in sorted(SQL_DIR.glob("*.sql"))}


def list_queries() -> list[Query]:
    """Every named query, by name."""
    return list(_all().values())


def load_query(name: str) -> Query:
    """The named query `name`, or QueryError listing the known names."""
    try:
        return _all()[name]
    except KeyError:
        known = ", ".join(_all())
        raise QueryError(f"unknown query {name!r}; known: {known}") from None


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """`k=v` strings (from --param) to a dict; the value may itself contain '='."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise QueryError(f"--param expects NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def bind_params(con: duckdb.DuckDBPyConnection, query: Query,
                values: Mapping[str, object] | None = None) -> dict[str, object]:
    """Every parameter of `query`, from `values` or its default, cast by DuckDB to its type."""
    values = dict(values or {})
    unknown = sorted(set(values) - {p.name for p in query.params})
    if unknown:
        accepted = ", ".join(p.name for p in query.params) or "none"
        raise QueryError(f"query {query.name!r} has no parameter {unknown[0]!r} "
                         f"(parameters: {accepted})")
    bound: dict[str, object] = {}
    for p in query.params:
        raw = values.get(p.name, p.default)
        if isinstance(raw, list | tuple | set):
            # A list for a text parameter (customer_ids): the comma-separated form.
            raw = ",".join(str(v) for v in raw) if p.type.upper() == "VARCHAR" else list(raw)
        if raw is None:
            bound[p.name] = None
            continue
        try:
            bound[p.name] = con.execute(f"SELECT CAST($v AS {p.type})", {"v": raw}).fetchone()[0]
        except duckdb.Error as e:
            raise QueryError(f"parameter {p.name}={raw!r} is not a valid {p.type}: "
                             f"{str(e).splitlines()[0]}") from None
    return bound


def run_named(con: duckdb.DuckDBPyConnection, name: str,
              params: Mapping[str, object] | Iterable[str] | None = None
              ) -> duckdb.DuckDBPyRelation:
    """Run the named query on a connection with the lake's views; returns its result."""
    query = load_query(name)
    if params is not None and not isinstance(params, Mapping):
        params = parse_params(params)
    return con.sql(query.sql, params=bind_params(con, query, params))
