"""A scrub killed with SIGKILL anywhere, then re-run with the same command, ends in the same lake
as an uninterrupted run, with no temp file left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.intake import parse_ids
from pipeline.lake import Lake
from pipeline.scrub import run_scrub
from tests.pipeline.cli_child import Ended, run_cli
from tests.pipeline.conftest import lake_digest, snapshot

IDS = "2,3,5,7,11,13,17,19,23"

# (point, n): killed the n-th time the job reaches the point. 28 points across every phase:
# plan entries and rewrites interleave (a file is rewritten as soon as it is planned).
POINTS = [("resolved", 1)] + [("after_plan", n) for n in (1, 3, 15)] + \
    [("before_rewrite", n) for n in (1, 2, 5, 17, 40)] + \
    [("mid_write", n) for n in (1, 3, 12, 33)] + \
    [("before_rename", n) for n in (1, 4, 9, 25)] + \
    [("after_rename", n) for n in (1, 2, 6, 20, 37)] + \
    [("planned", 1), ("after_commits", 1), ("after_manifest", 1), ("after_receipt", 1)]
# Killed twice: once in the first run, again while resuming.
TWICE = [(("after_rename", 3), ("before_rewrite", 2)), (("mid_write", 5), ("mid_write", 2)),
         (("after_plan", 4), ("after_plan", 2))]


# Run through the real executable in a new interpreter (the others fork from a warm server):
# its allocator setting, and its exit after a signal
FRESH = {("mid_write", 3), ("after_rename", 3)}


def scrub(lake: Path, crash_at: str, fresh: bool = False) -> Ended:
    """The job, in its own process, stopped by VOICESCRUB_CRASH_AT."""
    return run_cli(["scrub", "--lake", str(lake), "--ids", IDS, "--strategy", "arrow",
                    "--workers", "2"], {"VOICESCRUB_CRASH_AT": crash_at}, lake.parent,
                   fresh=fresh)


def killed_at(lake: Path, point: tuple[str, int]) -> None:
    proc = scrub(lake, f"{point[0]}:{point[1]}", fresh=point in FRESH)
    assert proc.returncode == -9, (point, proc.returncode, proc.stderr[-500:])


def data_state(lake: Path) -> tuple[dict, dict]:
    files = {k: v for k, v in lake_digest(lake).items() if k.endswith(".parquet")
             and not k.startswith("_scrub")}
    m = json.loads((lake / "_lake.json").read_text())
    return files, {t: (v["rows"], v["replica_rows"], v["files"]) for t, v in m["tables"].items()}


@pytest.fixture(scope="module")
def reference(date_src: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    lake = snapshot(date_src, tmp_path_factory.mktemp("ref") / "lake")
    run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)
    return data_state(lake)


def finish_and_compare(lake: Path, reference: tuple[dict, dict]) -> None:
    outcome = run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)
    assert outcome.receipt["verification"]["passed"]
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"
    assert data_state(lake) == reference
    assert not list((lake / "_scrub").glob("*/keys-*.parquet")), "raw keys survived the job"


@pytest.mark.parametrize("point", POINTS, ids=[f"{p}:{n}" for p, n in POINTS])
def test_killed_once(point: tuple[str, int], date_src: Path, tmp_path: Path,
                     reference: tuple[dict, dict]) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    killed_at(lake, point)
    finish_and_compare(lake, reference)


@pytest.mark.parametrize("points", TWICE, ids=["rename-then-rewrite", "mid-write-twice",
                                               "plan-twice"])
def test_killed_twice(points, date_src: Path, tmp_path: Path,  # noqa: ANN001
                      reference: tuple[dict, dict]) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    for p in points:
        killed_at(lake, p)
    finish_and_compare(lake, reference)


def test_lost_journal_tail(date_src: Path, tmp_path: Path, reference: tuple[dict, dict]) -> None:
    """The journal is not fsynced: after a power loss, renamed files may have lost their plan
    entries. Simulated by dropping the journal's lines after a kill: a resumed job still tells
    the rewritten files by their footers (fewer rows than the manifest says) and finishes."""
    lake = snapshot(date_src, tmp_path / "lake")
    killed_at(lake, ("after_rename", 6))
    (log,) = (lake / "_scrub").glob("*/journal.jsonl")
    renamed = [json.loads(line)["path"] for line in log.read_text().splitlines()
               if json.loads(line)["state"] == "committed"]
    # five renames before the killing one; the other worker may be between its rename and
    # its journal line when the kill lands
    assert len(renamed) >= 4
    log.write_text("")
    finish_and_compare(lake, reference)


@pytest.mark.parametrize("sig, code", [("INT", 130), ("TERM", 143)])
def test_stopped_by_signal_between_files(sig: str, code: int, date_src: Path, tmp_path: Path,
                                         reference: tuple[dict, dict]) -> None:
    """Ctrl-C or SIGTERM mid-job: the files in flight finish, no other starts, the command
    says so and exits 130 / 143; the same command finishes the job."""
    lake = snapshot(date_src, tmp_path / "lake")
    proc = scrub(lake, f"after_rename:3:{sig}", fresh=True)
    assert proc.returncode == code, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())
    assert "interrupted: job" in message and "re-run the same command to finish it" in message
    committed = int(message.split("after rewriting ")[1].split()[0])
    # the third file, and the other worker's file in flight: no worker starts another
    assert 3 <= committed <= 3 + 1  # (two workers)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"
    finish_and_compare(lake, reference)


def test_torn_journal_line(date_src: Path, tmp_path: Path, reference: tuple[dict, dict]) -> None:
    """A crash that tears the journal's last line (a full disk, a power cut): the resumed
    job appends after a clean line, so nothing it writes is lost with the torn one."""
    lake = snapshot(date_src, tmp_path / "lake")
    killed_at(lake, ("after_rename", 5))
    (log,) = lake.glob("_scrub/*/journal.jsonl")
    data = log.read_bytes()
    log.write_bytes(data[:-9])  # the last entry cut mid-line
    finish_and_compare(lake, reference)


@pytest.mark.parametrize("point", ["resolved", "planned", "after_manifest"])
def test_stopped_by_signal_outside_the_rewrites(point: str, date_src: Path, tmp_path: Path,
                                                reference: tuple[dict, dict]) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    proc = scrub(lake, f"{point}:1:INT")
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "re-run the same command to finish it" in " ".join(proc.stderr.split())
    finish_and_compare(lake, reference)
