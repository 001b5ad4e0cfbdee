"""The job journal: what a scrub job planned and how far it got, so a killed job re-run with
the same command finishes, and a finished job re-run is a no-op.

Everything lives under <lake>/_scrub/<job id>/. The resolved keys are raw identifiers: they are
kept only while the job runs and deleted when it finishes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake import SCRUB_DIR, LakeError, fsync_dir

KEY_FILE = "receipt.key"
KEY_DIGITS = 64  # hex digits of a key this module makes


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


MIN_ENV_KEY = 32  # characters of a key given in the environment (a hex key of 128 bits)


def lake_secret(root: Path, create: bool = True) -> bytes | None:
    """Secret of the keyed hashes in receipts and job ids: VOICESCRUB_RECEIPT_KEY, else a
    random key made once per lake (so a receipt never reveals which ids it names).
    With create=False, None when the lake has none yet (no job can have started)."""
    env = os.environ.get("VOICESCRUB_RECEIPT_KEY")
    if env is not None:
        if len(env.strip()) < MIN_ENV_KEY:
            # as with a cut key file: a short secret makes the hashed ids guessable
            raise LakeError(
                f"VOICESCRUB_RECEIPT_KEY holds {len(env.strip())} characters, fewer than "
                f"{MIN_ENV_KEY}: with a short key anyone could recover the customer ids a "
                "receipt hashes. Use a long random secret (e.g. `openssl rand -hex 32`), the "
                "same for every job of the lake, or unset it to use the lake's key file")
        return env.encode()
    path = root / SCRUB_DIR / KEY_FILE
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(exist_ok=True)
        _create_key(path)
    key = path.read_text().strip()
    if len(key) != KEY_DIGITS or key.strip("0123456789abcdef"):
        # An empty or cut key would make the "salted" hashes of small integer ids guessable.
        raise LakeError(
            f"{path} is not a receipt key ({len(key)} characters, not {KEY_DIGITS} hex "
            "digits): receipts hash customer ids and name jobs with it. Restore it from a "
            "backup; or delete it and a new one is made (an unfinished job is still resumed "
            "by its own command; receipts written so far keep the old key's hashes)")
    return key.encode()


def _create_key(path: Path) -> None:
    """A new random key, written and fsynced under a temp name, then linked into place: the
    key file is whole or absent, even when the disk fills or the machine stops mid-write."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(KEY_DIGITS // 2))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process made one first: theirs is the key
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links (FAT, some FUSE mounts)
            if not path.exists():  # jobs hold the lake's lock: no other makes one meanwhile
                os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def keyed_hashes(secret: bytes, ids: np.ndarray) -> list[str]:
    import hmac

    return [hmac.new(secret, str(int(i)).encode(), hashlib.sha256).hexdigest()[:32] for i in ids]


class Journal:
    def __init__(self, root: Path, job_id: str) -> None:
        self.root = root
        self.job_id = job_id
        self.dir = root / SCRUB_DIR / job_id
        self._log: int | None = None  # the journal's file descriptor, once opened to append
        self._log_lock = threading.Lock()

    @classmethod
    def for_request(cls, root: Path, ids: np.ndarray, create: bool = True,
                    fingerprint: str | None = None, verify: str = "default"
                    ) -> Journal | None:
        """The job of a request (its id is a keyed hash of the ids); with create=False, None
        when the lake has no receipt key yet, so nothing is written before validation.

        With the lake's `fingerprint`, a finished job stands for the request only while the
        lake is as that job left it. Once the lake has changed (data ingested, other jobs
        run), the same ids are a new request: the next job of the series (`<id>-1`, `-2`, …),
        so a customer who asks again is erased again and every receipt is kept. Nor does a
        job verified by footers stand for a request to `verify` deep: the next job then
        resolves, plans and verifies without trusting any metadata."""
        secret = lake_secret(root, create)
        if secret is None:
            return None
        base = hashlib.sha256(secret + np.asarray(ids, np.int64).tobytes()).hexdigest()[:16]
        job, n = cls(root, base), 0
        # a receipt from before fingerprints were recorded cannot vouch for the lake: the
        # request runs again (finding nothing where nothing came back)
        while fingerprint is not None and job.finished and not job.stands_for(fingerprint,
                                                                             verify):
            n += 1
            job = cls(root, f"{base}-{n}")
        return job

    @classmethod
    def unfinished_for(cls, root: Path, ids: np.ndarray, subject: str) -> Journal | None:
        """The unfinished job of exactly these ids, found by the ids it stored rather than by
        its name: its command resumes it even if the receipt key changed since it was
        killed (a key file replaced, VOICESCRUB_RECEIPT_KEY set in one shell, not another)."""
        want = np.unique(np.asarray(ids, np.int64))
        for job_id in cls.unfinished(root):
            try:
                held = pq.read_table(root / SCRUB_DIR / job_id / f"keys-{subject}.parquet")
                held_ids = np.unique(held["k"].to_numpy())
            except (OSError, KeyError, pa.ArrowException):
                continue  # not a job this code can read the ids of: never resumed blindly
            if np.array_equal(held_ids, want):
                return cls(root, job_id)
        return None

    @staticmethod
    def unfinished(root: Path) -> list[str]:
        """Jobs on the lake that started and did not finish (killed, or failed)."""
        d = root / SCRUB_DIR
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir()
                      if (p / "plan.json").exists() and not (p / "done.json").exists())

    def stands_for(self, fingerprint: str, verify: str) -> bool:
        """Whether this finished job answers a request made now: the lake is as it left it
        and it was verified at least as thoroughly as asked."""
        done = self.receipt()
        mode = done.get("verification", {}).get("mode", "default")
        return done.get("lake_fingerprint") == fingerprint and (verify != "deep" or
                                                                 mode == "deep")

    # --- state -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return (self.dir / "done.json").exists()

    @property
    def started(self) -> bool:
        return (self.dir / "plan.json").exists()

    def start(self, keys: dict[str, pa.Array], plan: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.dir.parent)  # the job's directory is found again after a crash
        for kind, values in keys.items():
            pq.write_table(pa.table({"k": values}), self.dir / f"keys-{kind}.parquet")
        self.complete(plan)

    def complete(self, plan: dict) -> None:
        """Write the job's plan durably: at start what is known then, at the end the complete
        one (every file planned and done), which replaces it."""
        _write_durably(self.dir / "plan.json", json.dumps(plan).encode())

    def load(self) -> tuple[dict[str, pa.Array], dict]:
        keys = {p.stem.removeprefix("keys-"): pq.read_table(p)["k"].combine_chunks()
                for p in sorted(self.dir.glob("keys-*.parquet"))}
        return keys, json.loads((self.dir / "plan.json").read_text())

    def entries(self) -> dict[str, dict]:
        """Each file's entries merged, the last one winning: path -> {"state": "planned" |
        "committed", "plan": ..., ...}."""
        out: dict[str, dict] = {}
        path = self.dir / "journal.jsonl"
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash: the lines after it still count
                out[e["path"]] = {**out.get(e["path"], {}), **e}
        return out

    def log(self, entry: dict, durable: bool = False) -> None:
        """Append an entry, whole or not at all. Not fsynced unless `durable`: a copy-on-write
        job's journal speeds up a resume but correctness never depends on it (a file's row
        count tells whether it is the old or the new version); a format job's counts from
        before a DELETE are what its re-run is checked against."""
        line = (json.dumps(entry) + "\n").encode()
        with self._log_lock:
            if self._log is None:
                self._log = self._open_log()
            start = os.lseek(self._log, 0, os.SEEK_END)
            try:
                if os.write(self._log, line) != len(line):
                    raise OSError(errno.ENOSPC, "short write to the scrub journal")
            except BaseException:
                os.ftruncate(self._log, start)  # no half line for the next entry to follow
                raise
            if durable:
                os.fsync(self._log)

    def _open_log(self) -> int:
        """The journal opened to append, a torn last line (a crash mid-write) cut off first:
        an entry appended to it would be lost with it."""
        path = self.dir / "journal.jsonl"
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if created:  # the file's own name survives a crash like the entries fsynced into it
            fsync_dir(self.dir)
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            os.ftruncate(fd, end)
        return fd

    def finish(self, receipt: dict) -> None:
        """Mark done and drop everything that names a raw key."""
        if self._log is not None:
            os.close(self._log)
            self._log = None
        _write_durably(self.dir / "done.json", json.dumps(receipt, indent=1).encode())
        for p in self.dir.glob("keys-*.parquet"):
            p.unlink()
        for name in ("plan.json", "journal.jsonl"):
            (self.dir / name).unlink(missing_ok=True)
        fsync_dir(self.dir)

    def receipt(self) -> dict:
        return json.loads((self.dir / "done.json").read_text())

    def abandon(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def temp_path(self, target: Path) -> Path:
        """Where the rewrite of `target` is written before the rename (hidden, not .parquet)."""
        return target.with_name(f".{target.name}.{self.job_id}.tmp")
