"""The lake's receipt key: made whole or not at all, and never used when damaged."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import journal
from pipeline.cli import app
from pipeline.journal import KEY_FILE, Journal, lake_secret
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


@pytest.mark.parametrize("value", ["", "   ", "secret", "x" * 31])
def test_a_short_key_in_the_environment_is_refused(date_src: Path, tmp_path: Path, value: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake)
    monkeypatch.setenv("VOICESCRUB_RECEIPT_KEY", value)
    result = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "2,3"])
    assert result.exit_code == 2, result.output
    assert "VOICESCRUB_RECEIPT_KEY holds" in result.output
    assert lake_digest(lake) == before
    monkeypatch.setenv("VOICESCRUB_RECEIPT_KEY", "k" * 32)
    assert lake_secret(lake) == b"k" * 32


def test_a_torn_line_loses_nothing_after_it(tmp_path: Path) -> None:
    j = Journal(tmp_path, "job")
    j.dir.mkdir(parents=True)
    j.log({"path": "a", "state": "planned"})
    os.close(j._log)
    with open(j.dir / "journal.jsonl", "a") as fh:
        fh.write('{"path": "a", "state": "comm')  # a crash mid-line
    again = Journal(tmp_path, "job")
    again.log({"path": "b", "state": "committed"})
    assert again.entries() == {"a": {"path": "a", "state": "planned"},
                               "b": {"path": "b", "state": "committed"}}
    # and a torn line in the middle (an older journal) does not hide the lines after it
    (j.dir / "journal.jsonl").write_text('{"path": "a"}\n{"pa\n{"path": "c"}\n')
    assert set(Journal(tmp_path, "job").entries()) == {"a", "c"}


def test_a_short_write_leaves_no_half_line(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path, "job")
    j.dir.mkdir(parents=True)
    j.log({"path": "a", "state": "planned"})
    real_write = os.write
    monkeypatch.setattr(journal.os, "write", lambda fd, data: real_write(fd, data[:7]))
    with pytest.raises(OSError, match="short write"):
        j.log({"path": "b", "state": "committed"})
    monkeypatch.undo()
    j.log({"path": "c", "state": "committed"})
    assert (j.dir / "journal.jsonl").read_text().count("\n") == 2
    assert set(j.entries()) == {"a", "c"}


def test_key_on_a_filesystem_without_hard_links(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*_: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(journal.os, "link", no_links)
    key = lake_secret(tmp_path)
    assert len(key) == 64 and lake_secret(tmp_path) == key
    assert [p.name for p in (tmp_path / SCRUB_DIR).iterdir()] == [KEY_FILE]


@pytest.mark.parametrize("change", ["key file replaced", "key set in the environment"])
def test_a_killed_job_is_resumed_by_its_command_after_the_key_changed(
        date_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """A job is named by a keyed hash of its ids; found by the ids it stored, it is resumed
    by its own command even once the key is another (before: refused as some other job's
    unfinished work, and every later job with it)."""
    import numpy as np

    import pipeline.scrub as scrub_mod
    from pipeline.audit import run_audit
    from pipeline.intake import parse_ids
    from pipeline.lake import Lake

    lake = snapshot(date_src, tmp_path / "lake")

    def killed(point: str) -> None:
        if point == "planned":  # every file rewritten, the manifest not yet updated
            raise KeyboardInterrupt

    monkeypatch.setattr(scrub_mod, "crashpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        scrub_mod.run_scrub(Lake.open(lake), parse_ids("2,3"), "arrow", workers=2)
    (killed_job,) = Journal.unfinished(lake)
    monkeypatch.undo()
    monkeypatch.delenv("VOICESCRUB_RECEIPT_KEY", raising=False)
    if change == "key file replaced":
        (lake / SCRUB_DIR / KEY_FILE).unlink()
    else:
        monkeypatch.setenv("VOICESCRUB_RECEIPT_KEY", "e" * 64)
    out = scrub_mod.run_scrub(Lake.open(lake), parse_ids("3,2"), "arrow", workers=2)
    assert out.receipt["job_id"] == killed_job and out.receipt["resumed"]
    assert out.receipt["verification"]["passed"] and not Journal.unfinished(lake)
    assert run_audit(Lake.open(lake), np.array([2, 3]), names=False).clean
    assert scrub_mod.run_scrub(Lake.open(lake), parse_ids("4"), "arrow", workers=2).receipt
