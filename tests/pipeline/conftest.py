from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.config import LakeConfig
from generators.lake import generate

TINY = dict(sf=0.003, days=1, seed=11)
BUCKET_REGIONS = ("us-east-1", "eu-central-1")


def _make(tmp_path_factory: pytest.TempPathFactory, layout: str, **kw) -> Path:
    out = tmp_path_factory.mktemp("scrub-src") / layout
    generate(LakeConfig(layout=layout, workers=1, **{**TINY, **kw}), out)
    return out


def lake_state(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under a lake: a write into a file, in place
    or through one of its hard links, changes them (cheaper than hashing every byte)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _shared(src: Path) -> Iterator[Path]:
    """A session's source lake, checked unchanged at the end: tests work on hard-linked
    snapshots, so a test that writes into a snapshot's file in place (truncate, write_text)
    changes the source under every later test; this names it instead of a trail of failures
    elsewhere."""
    before = lake_state(src)
    yield src
    changed = sorted(k for k, v in lake_state(src).items() if before.get(k) != v)
    assert not changed, f"a test wrote into the shared source lake {src}: {changed[:5]}"


@pytest.fixture(scope="session")
def date_src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from _shared(_make(tmp_path_factory, "date"))


@pytest.fixture(scope="session")
def bucket_src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two regions (their replicas in two more): eight buckets make a file per bucket, region
    and table (~200 files; six regions made ~600, three times the work of every scrub). Eight,
    because a key set routes only when it misses some buckets: ten customers cover four."""
    yield from _shared(_make(tmp_path_factory, "bucket", buckets=8, regions=BUCKET_REGIONS))


@pytest.fixture(scope="session")
def format_src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The table-format tests' lake: two regions, one day (4 files per fact table with their
    replicas, not 36). The formats' engines cost per file (pyiceberg's delete: files × ids);
    what those tests check does not depend on the count, as long as a table has several."""
    yield from _shared(_make(tmp_path_factory, "date", days=1,
                             regions=("us-east-1", "eu-central-1")))


def snapshot(src: Path, dst: Path) -> Path:
    """A hard-linked copy: free, and safe because a scrub never writes into an existing file
    (a test in test_scrub asserts the source's inodes are untouched)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def lake_digest(root: Path) -> dict[str, str]:
    """Content hash of every file under a lake (to prove a lake was not touched)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def n_customers(format_src: Path) -> int:
    return json.loads((format_src / "_lake.json").read_text())["config"]["n_customers"]


@pytest.fixture(scope="session")
def converted(format_src: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """format_src converted to each format once per session (read-only: tests that erase work
    on a fresh copy, format_lakes.fresh), and to Iceberg once more at the path its fresh
    copies are restored to."""
    from pipeline.formats import available
    from pipeline.formats.convert import convert
    from pipeline.lake import Lake

    root = tmp_path_factory.mktemp("converted")
    out = {fmt: convert(Lake.open(format_src), fmt, root / fmt).root for fmt in available()}
    work = convert(Lake.open(format_src), "iceberg", root / "iceberg-work").root
    out["iceberg-work"], out["iceberg-pristine"] = work, root / "iceberg-pristine"
    shutil.copytree(work, out["iceberg-pristine"])
    return out
