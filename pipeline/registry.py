"""Plug-ins found by name: every module of a package that defines a given attribute (a class
with a `name`) is one entry. Strategies and table formats are both found this way."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def discover(package: str, path: Iterable[str], attr: str,
             skip: tuple[str, ...] = ("base",)) -> dict[str, type]:
    found = {}
    for info in pkgutil.iter_modules(path):
        if info.name in skip:
            continue
        cls = getattr(importlib.import_module(f"{package}.{info.name}"), attr, None)
        if cls is not None:
            found[cls.name] = cls
    return dict(sorted(found.items()))
