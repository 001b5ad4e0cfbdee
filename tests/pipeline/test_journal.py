"""The lake's receipt key: made whole or not at all, and never used when damaged."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import journal
from pipeline.cli import app
from pipeline.journal import KEY_FILE, lake_secret
from pipeline.lake import SCRUB_DIR, LakeError
from tests.pipeline.conftest import lake_digest, snapshot

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICESCRUB_RECEIPT_KEY", raising=False)


def test_key_is_made_once(tmp_path: Path) -> None:
    (tmp_path / SCRUB_DIR).mkdir()
    assert lake_secret(tmp_path, create=False) is None
    key = lake_secret(tmp_path)
    assert len(key) == 64 and lake_secret(tmp_path) == key
    assert [p.name for p in (tmp_path / SCRUB_DIR).iterdir()] == [KEY_FILE]


def test_a_key_that_cannot_be_written_leaves_nothing(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        lake_secret(tmp_path)
    assert list((tmp_path / SCRUB_DIR).iterdir()) == []  # no empty key for the next job


@pytest.mark.parametrize("text", ["", "ab12", "z" * 64])
def test_a_damaged_key_is_refused(date_src: Path, tmp_path: Path, text: str) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    (lake / SCRUB_DIR).mkdir()
    (lake / SCRUB_DIR / KEY_FILE).write_text(text)
    with pytest.raises(LakeError, match="is not a receipt key"):
        lake_secret(lake)
    before = lake_digest(lake)
    result = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "2,3"])
    assert result.exit_code == 2 and "is not a receipt key" in result.output
    assert lake_digest(lake) == before
