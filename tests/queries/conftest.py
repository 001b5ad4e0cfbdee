"""Tiny lakes shared by the queries tests: generated once per session, in both layouts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from generators.config import LakeConfig
from generators.lake import generate, read_manifest
from queries.views import connect

LAYOUTS = ("date", "bucket")


@pytest.fixture(scope="session")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """layout -> lake root. Same seed and size, so both hold the same rows."""
    out = {}
    for layout in LAYOUTS:
        root = tmp_path_factory.mktemp(f"lake-{layout}") / "lake"
        generate(LakeConfig(sf=0.005, days=5, workers=1, layout=layout), root)
        out[layout] = root
    return out


@pytest.fixture(params=LAYOUTS)
def lake(request: pytest.FixtureRequest, lakes: dict[str, Path]) -> Path:
    return lakes[request.param]


@pytest.fixture
def manifest(lake: Path) -> dict:
    return read_manifest(lake)


@pytest.fixture
def con(lake: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(lake)
    yield c
    c.close()


@pytest.fixture(scope="session")
def customer(lakes: dict[str, Path]) -> int:
    """A customer with recordings, actions and linked skills that have events."""
    c = connect(lakes["date"])
    row = c.sql("""
        SELECT l.customer_id
        FROM skill_links AS l JOIN skill_events AS e USING (skill_user_id)
        GROUP BY ALL ORDER BY count(*) DESC, l.customer_id LIMIT 1""").fetchone()
    c.close()
    return row[0]
