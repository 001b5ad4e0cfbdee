from __future__ import annotations

from pathlib import Path

import pytest

from generators.config import LakeConfig
from generators.lake import generate

SMALL = dict(sf=0.005, days=5, seed=7)


@pytest.fixture(scope="session")
def date_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "date"
    generate(LakeConfig(layout="date", workers=1, **SMALL), out)
    return out


@pytest.fixture(scope="session")
def bucket_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "bucket"
    generate(LakeConfig(layout="bucket", workers=2, buckets=4, **SMALL), out)
    return out
