"""A full disk: refused before anything is written when the room is missing from the start;
mid-job, the job stops with every file whole and the same command finishes it later."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from pipeline import room
from pipeline.cli import app
from pipeline.intake import parse_ids
from pipeline.lake import Lake
from pipeline.scrub import run_scrub
from pipeline.strategies.base import Sink
from tests.pipeline.conftest import lake_digest, snapshot
from tests.pipeline.test_faults import IDS, data_state

runner = CliRunner()


def scrub(lake: Path):  # noqa: ANN201
    return runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", IDS, "--workers", "2"])


def test_no_room_is_refused_before_anything_is_written(date_src: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    sizes = sorted((p.stat().st_size for p in lake.rglob("*.parquet")), reverse=True)
    needed = sizes[0] + sizes[1] + room.SLACK
    usage = shutil.disk_usage(lake)
    monkeypatch.setattr(room.shutil, "disk_usage",
                        lambda _: usage._replace(free=needed - 1))
    before = lake_digest(lake)
    result = scrub(lake)
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "2 file(s) in flight (--workers)" in out and "lower --workers" in out
    assert lake_digest(lake) == before
    monkeypatch.setattr(room.shutil, "disk_usage", lambda _: usage._replace(free=needed))
    room.check_room(Lake.open(lake), 2)  # exactly enough passes


def test_disk_full_mid_job_stops_whole_and_finishes_later(
        date_src: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ref = snapshot(date_src, tmp_path_factory.mktemp("ref") / "lake")
    run_scrub(Lake.open(ref), parse_ids(IDS), "arrow", workers=2)
    lake = snapshot(date_src, tmp_path / "lake")
    write_group, calls = Sink._write_group, []

    def fills_up(self, table):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) >= 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_group(self, table)

    monkeypatch.setattr(Sink, "_write_group", fills_up)
    result = scrub(lake)
    assert result.exit_code == 1, result.output
    assert "filesystem is full" in result.output and "re-run the same command" in result.output
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"
    monkeypatch.undo()
    assert scrub(lake).exit_code == 0
    assert data_state(lake) == data_state(ref)


@pytest.mark.parametrize("what", ["read-only", "denied"])
def test_a_lake_it_may_not_write_is_refused(date_src: Path, tmp_path: Path, what: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    one_dir = next(lake.rglob("*.parquet")).parent
    if what == "read-only":
        real = os.statvfs(lake)
        monkeypatch.setattr(room.os, "statvfs", lambda _: SimpleNamespace(
            f_flag=real.f_flag | os.ST_RDONLY))
        message = "is on a read-only filesystem"
    else:
        access = os.access
        monkeypatch.setattr(room.os, "access", lambda p, mode: Path(p) != one_dir
                            and access(p, mode))
        message = f"may not create files in 1 of the lake's directories, e.g. {one_dir}"
    before = lake_digest(lake)
    result = scrub(lake)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert lake_digest(lake) == before
