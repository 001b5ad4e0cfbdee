"""Strategies, one module each, found by name: adding a strategy is adding a module that
defines STRATEGY (a subclass of base.Strategy)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pipeline.strategies.base import Strategy


@cache
def available() -> dict[str, type[Strategy]]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "STRATEGY", None)
        if cls is not None:
            found[cls.name] = cls
    return dict(sorted(found.items()))


def get(name: str) -> Strategy:
    strategies = available()
    if name not in strategies:
        raise KeyError(f"unknown strategy {name!r}; available: {', '.join(strategies)}")
    return strategies[name]()
