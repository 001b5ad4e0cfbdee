"""The table formats a user would erase with instead: one module each, found by name (a module
that defines FORMAT, a subclass of base.TableFormat)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pipeline.formats.base import FormatLake, StepResult, TableFormat

__all__ = ["FormatLake", "StepResult", "TableFormat", "available", "get"]


@cache
def available() -> dict[str, type[TableFormat]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "convert"):
            continue
        cls = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if cls is not None:
            found[cls.name] = cls
    return dict(sorted(found.items()))


def get(name: str) -> TableFormat:
    formats = available()
    if name not in formats:
        raise KeyError(f"unknown table format {name!r}; available: {', '.join(formats)}")
    return formats[name]()
