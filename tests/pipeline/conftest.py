from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from generators.config import LakeConfig
from generators.lake import generate

TINY = dict(sf=0.003, days=3, seed=11)


def _make(tmp_path_factory: pytest.TempPathFactory, layout: str, **kw) -> Path:
    out = tmp_path_factory.mktemp("scrub-src") / layout
    generate(LakeConfig(layout=layout, workers=1, **{**TINY, **kw}), out)
    return out


@pytest.fixture(scope="session")
def date_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory, "date")


@pytest.fixture(scope="session")
def bucket_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory, "bucket", buckets=8)


def snapshot(src: Path, dst: Path) -> Path:
    """A hard-linked copy: free, and safe because a scrub never writes into an existing file
    (a test in test_scrub asserts the source's inodes are untouched)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def lake_digest(root: Path) -> dict[str, str]:
    """Content hash of every file under a lake (to prove a lake was not touched)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
