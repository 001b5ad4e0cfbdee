"""Strategies, one module each, found by name: adding a strategy is adding a module that
defines STRATEGY (a subclass of base.Strategy)."""

from __future__ import annotations

from functools import cache

from pipeline.registry import discover
from pipeline.strategies.base import Strategy


@cache
def available() -> dict[str, type[Strategy]]:
    return discover(__name__, __path__, "STRATEGY", skip=("base",))


def get(name: str) -> Strategy:
    strategies = available()
    if name not in strategies:
        raise KeyError(f"unknown strategy {name!r}; available: {', '.join(strategies)}")
    return strategies[name]()
