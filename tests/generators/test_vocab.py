from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from generators import vocab
from generators.vocab import Vocab, build_vocab


def _same(a: Vocab, b: Vocab) -> bool:
    def eq(x: object, y: object) -> bool:
        if isinstance(x, dict):
            return list(x) == list(y) and all(eq(x[k], y[k]) for k in x)  # type: ignore[index]
        return x.dtype == y.dtype and x.tolist() == y.tolist()  # type: ignore[union-attr]

    return all(eq(getattr(a, f.name), getattr(b, f.name)) for f in fields(Vocab))


@pytest.fixture
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("VOICESCRUB_CACHE_DIR", str(tmp_path))
    build_vocab.cache_clear()
    yield tmp_path
    build_vocab.cache_clear()


def test_a_kept_vocabulary_is_the_one_faker_builds(cache_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_vocab(7, 60, 12)
    (kept,) = cache_dir.glob("vocab-*.json")
    assert kept == vocab.cache_file(7, 60, 12)
    assert not list(cache_dir.glob(".*.tmp"))
    build_vocab.cache_clear()
    monkeypatch.setattr(vocab, "_build_vocab", lambda *a: pytest.fail("built again"))
    loaded = build_vocab(7, 60, 12)
    assert _same(loaded, built) and isinstance(loaded.first_names["ja_JP"], np.ndarray)
    # another seed is another file
    assert vocab.cache_file(8, 60, 12) != kept


@pytest.mark.parametrize("kept", ['{"first_names": {"en_US": ["Ann"',  # torn
                                  '{"first_names": 1}'])  # whole, but not a vocabulary
def test_a_torn_file_is_built_again_and_replaced(cache_dir: Path, kept: str) -> None:
    path = vocab.cache_file(7, 60, 12)
    path.write_text(kept)
    built = build_vocab(7, 60, 12)
    build_vocab.cache_clear()
    assert _same(vocab._from_json(path.read_text()), built)


def test_an_empty_cache_dir_keeps_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                          ) -> None:
    monkeypatch.setenv("VOICESCRUB_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert vocab.cache_file(7, 60, 12) is None
