"""The table formats a user would erase with instead: one module each, found by name (a module
that defines FORMAT, a subclass of base.TableFormat)."""

from __future__ import annotations

from functools import cache

from pipeline.formats.base import FormatLake, StepResult, TableFormat
from pipeline.registry import discover

__all__ = ["FormatLake", "StepResult", "TableFormat", "available", "get"]


@cache
def available() -> dict[str, type[TableFormat]]:
    return discover(__name__, __path__, "FORMAT", skip=("base", "convert"))


def get(name: str) -> TableFormat:
    formats = available()
    if name not in formats:
        raise KeyError(f"unknown table format {name!r}; available: {', '.join(formats)}")
    return formats[name]()
