"""The audit's temporary copies of archive members (which may hold the PII it looks for) do not
outlive it: removed when it is interrupted, and a killed audit's by the next audit."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.audit import run_audit
from pipeline.audit_unpack import PREFIX, remove_stale
from pipeline.lake import Lake
from tests.pipeline.conftest import snapshot

REPO = Path(__file__).resolve().parents[2]


def test_only_the_directories_of_gone_audits_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"{PREFIX}{gone.pid}-abc"
    mine = tmp_path / f"{PREFIX}{os.getpid()}-def"
    other = [tmp_path / f"{PREFIX}xyz", tmp_path / "unrelated"]
    for d in (dead, mine, *other):
        d.mkdir()
        (d / "content").write_bytes(b"jane@example.com")
    assert remove_stale(tmp_path) == [dead]
    assert not dead.exists() and mine.exists() and all(d.exists() for d in other)


def _lake_with_big_archive(date_src: Path, tmp_path: Path) -> Path:
    """A lake holding a .tar.gz whose member takes a while to unpack (so a signal finds the
    audit copying it)."""
    lake = snapshot(date_src, tmp_path / "lake")
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tf:
        info = tarfile.TarInfo("export.csv")
        big = b"customer_id,note\n" + b"0" * (600 << 20)
        info.size = len(big)
        tf.addfile(info, io.BytesIO(big))
    (lake / "exports").mkdir()
    (lake / "exports" / "big.tar.gz").write_bytes(gzip.compress(payload.getvalue(), 1))
    return lake


def _audit_until_copying(lake: Path, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "VOICESCRUB_AUDIT_TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "audit", "--lake",
                             str(lake), "--ids", "1", "--no-names", "--workers", "1"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            # a background job's children inherit SIGINT ignored: a user's
                            # Ctrl-C reaches a shell's foreground job, as here
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size > (1 << 20) for p in tmp.glob(f"{PREFIX}*/member-*/content")):
            return proc
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the audit never started copying the archive's content")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_audit_removes_its_copies(date_src: Path, tmp_path: Path,
                                                 sig: signal.Signals) -> None:
    lake = _lake_with_big_archive(date_src, tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _audit_until_copying(lake, tmp)
    proc.send_signal(sig)
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()
    assert list(tmp.iterdir()) == []


def test_a_killed_audits_copies_are_removed_by_the_next(date_src: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    lake = _lake_with_big_archive(date_src, tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = _audit_until_copying(lake, tmp)
    proc.kill()
    proc.wait(timeout=60)
    left = list(tmp.glob(f"{PREFIX}{proc.pid}-*"))
    assert left  # SIGKILL: nothing can clean up
    (lake / "exports" / "big.tar.gz").unlink()
    monkeypatch.setenv("VOICESCRUB_AUDIT_TMPDIR", str(tmp))
    run_audit(Lake.open(lake), np.array([1]), names=False)
    assert list(tmp.iterdir()) == []
