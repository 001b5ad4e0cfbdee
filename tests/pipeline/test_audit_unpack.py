"""The audit's temporary copies of archive members (which may hold the PII it looks for) do not
outlive it: removed when it is interrupted, and a killed audit's by the next audit."""

from __future__ import annotations

import functools
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
from pipeline.audit_unpack import PREFIX, remove_stale, unpack_dir
from pipeline.lake import Lake
from tests.pipeline.conftest import snapshot

REPO = Path(__file__).resolve().parents[2]


def test_only_the_directories_of_gone_audits_are_removed(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """An audit's lock on its directory says it runs (a process id would not, across PID
    namespaces): the directory of an audit that is gone has a lock anyone can take."""
    monkeypatch.setenv("VOICESCRUB_AUDIT_TMPDIR", str(tmp_path))
    with unpack_dir() as area:
        running = area.path
        (running / "content").write_bytes(b"jane@example.com")
        # another process's audit, gone: it left its directory and its (released) lock
        gone = subprocess.run([sys.executable, "-c", (
            "import os; from pipeline.audit_unpack import unpack_dir\n"
            "with unpack_dir() as area:\n"
            "    (area.path / 'content').write_bytes(b'jane@example.com')\n"
            "    print(area.path, flush=True)\n"
            "    os._exit(9)  # as a SIGKILL: no cleanup\n")],
            cwd=REPO, env={**os.environ}, capture_output=True, text=True)
        dead = Path(gone.stdout.strip())
        assert (dead / "content").exists()
        assert remove_stale(tmp_path) == []  # too fresh to judge: its lock may be on its way
        old = time.time() - 120
        for d in tmp_path.iterdir():
            os.utime(d, (old, old))
        unlocked = tmp_path / f"{PREFIX}123-creating"  # no lock file yet: left alone
        unlocked.mkdir()
        unrelated = tmp_path / "unrelated"
        unrelated.mkdir()
        assert remove_stale(tmp_path) == [dead]
        assert (running / "content").exists() and unlocked.exists() and unrelated.exists()
    assert not running.exists()


@functools.cache
def _big_archive() -> bytes:
    """A .tar.gz whose member takes a while to unpack (so a signal finds the audit copying
    it): 600 MB of text in 2.7 MB, made once (4 s)."""
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tf:
        info = tarfile.TarInfo("export.csv")
        big = b"customer_id,note\n" + b"0" * (600 << 20)
        info.size = len(big)
        tf.addfile(info, io.BytesIO(big))
    return gzip.compress(payload.getvalue(), 1)


def _lake_with_big_archive(date_src: Path, tmp_path: Path) -> Path:
    lake = snapshot(date_src, tmp_path / "lake")
    (lake / "exports").mkdir()
    (lake / "exports" / "big.tar.gz").write_bytes(_big_archive())
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
    old = time.time() - 120  # (a directory younger than a minute is never judged stale)
    for d in left:
        os.utime(d, (old, old))
    (lake / "exports" / "big.tar.gz").unlink()
    monkeypatch.setenv("VOICESCRUB_AUDIT_TMPDIR", str(tmp))
    run_audit(Lake.open(lake), np.array([1]), names=False)
    assert list(tmp.iterdir()) == []


def test_two_audits_in_one_process_keep_their_own_directories(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """A worker thread unpacks into the directory of the audit whose file it reads, and one
    audit's interruption does not stop the other."""
    import threading

    from pipeline.audit_unpack import AuditCancelled, bind, check_cancelled, current_dir

    monkeypatch.setenv("VOICESCRUB_AUDIT_TMPDIR", str(tmp_path))
    seen = {}
    with unpack_dir() as a, unpack_dir() as b:
        def work(area: object, key: str) -> None:
            bind(area)  # type: ignore[arg-type]
            try:
                check_cancelled()
                seen[key] = current_dir()
            except AuditCancelled:
                seen[key] = "cancelled"

        b.cancelled.set()
        threads = [threading.Thread(target=work, args=(a, "a")),
                   threading.Thread(target=work, args=(b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {"a": a.path, "b": "cancelled"}
        assert current_dir() is None  # this thread reads no audit's file


def test_a_missing_temp_directory_is_a_clear_error(date_src: Path, tmp_path: Path) -> None:
    env = {**os.environ, "VOICESCRUB_AUDIT_TMPDIR": str(tmp_path / "nope")}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "audit", "--lake",
                           str(date_src), "--ids", "1", "--no-names"], env=env, cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "temporary directory" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
