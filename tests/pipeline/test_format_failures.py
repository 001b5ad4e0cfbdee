"""The table-format jobs when something goes wrong: a full disk, a failed commit, a failed
check, a kill between DELETEs, a stopped purge; and re-runs that finish what was left."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.audit import run_audit
from pipeline.cli import app
from pipeline.format_scrub import run_format_scrub
from pipeline.formats import FormatLake, get
from pipeline.intake import parse_ids
from pipeline.journal import Journal
from pipeline.lake import Lake
from tests.pipeline.cli_child import run_cli
from tests.pipeline.conftest import lake_digest
from tests.pipeline.format_lakes import (
    FORMATS,
    EngineError,
    data_parquet_files,
    erasure_request,
    fresh,
)

runner = CliRunner()


def test_a_plain_rerun_of_a_logical_only_job_purges(format_src: Path, tmp_path: Path,
                                                    converted: dict[str, Path]) -> None:
    """A request done with --logical-only, asked again without it (both steps): nothing is
    left to delete, but the purge it waits for runs; asked once more, nothing to do."""
    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    args = ["scrub", "--lake", str(flake.root), "--strategy", "ducklake", "--ids", "7,8"]
    assert runner.invoke(app, [*args, "--logical-only"]).exit_code == 0
    assert not run_audit(Lake.open(flake.root), np.array([7, 8]), names=False).clean
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "already finished" not in out and "the purge, which ran now" in out
    assert "state: physically deleted" in out and "stay on disk" not in out
    assert run_audit(Lake.open(flake.root), np.array([7, 8]), names=False).clean
    job = next((flake.root / "_scrub" / "receipts").glob("[0-9a-f]*.json"))
    assert json.loads(job.read_text())["state"] == "physically deleted"  # the copy users read
    r = runner.invoke(app, args)
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "already finished" in out and "ran now" not in out


def test_a_full_disk_during_a_format_delete_is_one_line_and_the_command_finishes(
        format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = get("ducklake")
    cls = type(fmt)
    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    real, calls = cls.delete, []

    def delete(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(args[1])
        if len(calls) == 3:
            raise EngineError('Could not write file "catalog.ducklake.wal": No space left '
                               "on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "delete", delete)
    args = ["scrub", "--lake", str(flake.root), "--strategy", "ducklake", "--ids", "3,4"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    out = " ".join(r.output.split())
    assert "is full" in out and "re-run the same command to finish it" in out
    assert "Traceback" not in r.output
    monkeypatch.setattr(cls, "delete", real)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert run_audit(Lake.open(flake.root), np.array([3, 4]), names=False).clean


def test_a_failed_commit_leaves_none_of_the_files_it_wrote(
        format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pyiceberg writes a DELETE's new data files, then commits: a commit that fails (here,
    the catalog's, as a full disk would) leaves files no snapshot reads. They are removed at
    once, so the re-run has their room back."""
    import errno

    from pyiceberg.catalog.sql import SqlCatalog

    flake = fresh("iceberg", converted, format_src, tmp_path / "ice")
    before = data_parquet_files(flake.root)
    written: list[int] = []

    def commit_table(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        written.append(len(data_parquet_files(flake.root) - before))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SqlCatalog, "commit_table", commit_table)
    args = ["scrub", "--lake", str(flake.root), "--strategy", "iceberg", "--ids", "3,4"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert written and written[0] > 0  # the DELETE had written its files when it failed
    assert data_parquet_files(flake.root) == before
    monkeypatch.undo()
    assert runner.invoke(app, args).exit_code == 0
    assert run_audit(Lake.open(flake.root), np.array([3, 4]), names=False).clean


def test_a_file_a_commit_made_live_is_never_removed(
        format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """A failure after the commit (the DELETE's files are live) removes nothing."""
    from pipeline.formats.orphans import remove_orphans

    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    fmt = get("ducklake")
    before = data_parquet_files(flake.root)
    table = "transcripts"
    fmt.delete(flake, table, "customer_id", pa.array([3, 4], pa.int64()))
    new = data_parquet_files(flake.root) - before
    assert new  # delete files, now live
    stray = fmt.table_dir(flake, table) / "stray.parquet"
    pq.write_table(pa.table({"x": [1]}), stray)
    root = fmt.table_dir(flake, table)
    assert remove_orphans(flake, fmt, table, root, {p.resolve() for p in before},
                          tries=2, pause=0) == 1
    assert data_parquet_files(flake.root) - before == new
    assert not stray.exists()


def test_a_stopped_delta_purge_keeps_the_checkpoint_it_wrote(
        format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Delta's checkpoints are Parquet files under the table, read by nothing that lists data
    files: the sweep after a failure must leave them (without one, a table whose old commits
    the purge cleaned up cannot be opened)."""
    from deltalake import DeltaTable

    flake = fresh("delta", converted, format_src, tmp_path / "d")
    scrub = ["scrub", "--lake", str(flake.root), "--strategy", "delta", "--ids", "3,4",
             "--logical-only"]
    assert runner.invoke(app, scrub).exit_code == 0
    rows = {t: get("delta").row_count(flake, t) for t in flake.tables()}
    real = DeltaTable.cleanup_metadata

    def stopped_after(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        real(self, *args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C while the call ran surfaces when it returns

    monkeypatch.setattr(DeltaTable, "cleanup_metadata", stopped_after)
    purge = ["purge", "--lake", str(flake.root), "--strategy", "delta"]
    assert runner.invoke(app, purge).exit_code != 0
    monkeypatch.undo()
    assert {t: get("delta").row_count(flake, t) for t in flake.tables()} == rows
    assert runner.invoke(app, purge).exit_code == 0
    assert run_audit(Lake.open(flake.root), np.array([3, 4]), names=False).clean


def _failing(step):  # noqa: ANN001, ANN202
    """`step` (logical_step or physical_step) whose verification reports a failure."""
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        tables, checks, seconds, verify_s = step(*args, **kwargs)
        return tables, {**checks, "passed": False, "failures": ["injected"]}, seconds, verify_s
    return run


def test_a_failed_verification_still_writes_the_receipt_and_its_copy(
        format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that fails verification exits 1 naming its receipt, written in the lake and to
    --receipt with the failure in it; a failed purge leaves its jobs waiting for the next."""
    import pipeline.format_scrub as fs

    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    lake, copy = str(flake.root), tmp_path / "r.json"
    scrub = ["scrub", "--lake", lake, "--strategy", "ducklake", "--receipt", str(copy)]
    with monkeypatch.context() as m:
        m.setattr(fs, "logical_step", _failing(fs.logical_step))
        r = runner.invoke(app, [*scrub, "--ids", "7"])
    assert r.exit_code == 1 and "logical step failed verification" in r.output, r.output
    failed = json.loads(copy.read_text())
    assert failed["state"] == "failed verification (logical step)"
    assert failed["logical"]["verification"]["failures"] == ["injected"]
    receipts = flake.root / "_scrub" / "receipts"
    assert json.loads((receipts / f"{failed['job_id']}.failed-1.json").read_text()) == failed
    r = runner.invoke(app, [*scrub, "--ids", "7"])  # re-run: finishes, keeps the failure
    assert r.exit_code == 0, r.output
    done = json.loads(copy.read_text())
    assert done["job_id"] == failed["job_id"] and done["state"] == "physically deleted"
    assert done["failed_attempts"] == [f"{failed['job_id']}.failed-1.json"]
    # the rows the failed attempt's DELETEs took are the job's (its re-run deletes none)
    erased = {t: (e["rows_before"], e["rows_deleted"], e["rows_after"])
              for t, e in failed["logical"]["tables"].items()}
    assert {t: (e["rows_before"], e["rows_deleted"], e["rows_after"])
            for t, e in done["logical"]["tables"].items()} == erased
    assert sum(n for _, n, _ in erased.values()) > 0
    assert all(e["this_attempt"]["rows_deleted"] == 0
               for e in done["logical"]["tables"].values() if e["rows_deleted"])

    assert runner.invoke(app, [*scrub, "--ids", "8", "--logical-only"]).exit_code == 0
    copy.unlink()
    with monkeypatch.context() as m:
        m.setattr(fs, "physical_step", _failing(fs.physical_step))
        r = runner.invoke(app, ["purge", "--lake", lake, "--strategy", "ducklake",
                                "--receipt", str(copy)])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "purge failed verification" in out, out
    assert "still wait for a purge" in out
    purge = json.loads(copy.read_text())
    assert purge["state"] == "failed verification (purge)"
    assert purge["physical"]["verification"]["failures"] == ["injected"]
    assert [j["still_pending"] for j in purge["jobs"]] == [True]
    assert fs._pending(FormatLake.open(flake.root))  # the job still waits for a purge
    r = runner.invoke(app, ["purge", "--lake", lake, "--strategy", "ducklake"])
    assert r.exit_code == 0, r.output
    assert not fs._pending(FormatLake.open(flake.root))


def test_a_scrub_with_both_steps_finishes_the_jobs_waiting_for_a_purge(
        format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """Its purge rewrites what earlier --logical-only jobs left, so it finishes them: they
    leave the pending list and their receipts say physically deleted, purged by this job."""
    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    run_format_scrub(flake, erasure_request([7]), "ducklake", logical_only=True)
    receipt, _ = run_format_scrub(flake, erasure_request([8]), "ducklake")
    import pipeline.format_scrub as fs

    assert not fs._pending(FormatLake.open(flake.root))
    [earlier] = receipt["purged_pending_jobs"]
    kept = json.loads((flake.root / "_scrub" / "receipts" / f"{earlier['job_id']}.json")
                      .read_text())
    assert kept["state"] == "physically deleted"
    assert kept["purged_by"] == f"{receipt['job_id']}.json"
    assert run_audit(Lake.open(flake.root), np.array([7, 8]), names=False).clean


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_on_disk_in_the_receipt_are_what_the_disk_holds(fmt: str, format_src: Path,
                                                              tmp_path: Path,
                                                              converted: dict[str, Path]
                                                              ) -> None:
    """DuckLake's catalog grew after the logical step's measure (the receipt said ~4 % less
    than the disk held once the command ended)."""
    flake = fresh(fmt, converted, format_src, tmp_path / fmt)
    receipt, _ = run_format_scrub(flake, erasure_request([5]), fmt, logical_only=True)
    get(fmt).release(flake)
    on_disk = sum(p.stat().st_size for p in flake.root.rglob("*") if p.is_file()
                  and "_scrub" not in p.parts)
    said = receipt["logical"]["bytes_on_disk_after"]
    assert abs(on_disk - said) <= 64 * 1024, (on_disk, said)  # (the job's own journal aside)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_job_killed_between_its_deletes_finishes_with_the_counts_of_the_whole_job(
        fmt: str, format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """SIGKILL after the first table's DELETE committed: another job is refused until the
    killed one's command finishes it; the re-run's receipt counts the rows the killed
    attempt deleted (a DELETE of rows already gone deletes none: it said 0 rows before)."""
    flake = fresh(fmt, converted, format_src, tmp_path / fmt)
    lake, ids = str(flake.root), "3,7,11"
    scrub = ["scrub", "--lake", lake, "--strategy", fmt, "--ids", ids]
    killed = run_cli(scrub, {"VOICESCRUB_CRASH_AT": "after_delete:1"}, tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    digest = lake_digest(flake.root)
    for other in (["scrub", "--lake", lake, "--strategy", fmt, "--ids", "5"],
                  ["purge", "--lake", lake, "--strategy", fmt]):
        r = runner.invoke(app, other)
        assert r.exit_code == 2 and "was interrupted and has not finished" in r.output, \
            r.output
        assert lake_digest(flake.root) == digest
    [killed_job] = Journal.unfinished(flake.root)
    # resumed by its ids, though the receipt key changed since (set in another shell)
    r = runner.invoke(app, [*scrub, "--receipt", str(tmp_path / "r.json")],
                      env={"VOICESCRUB_RECEIPT_KEY": "5" * 64})
    assert r.exit_code == 0, r.output
    done = json.loads((tmp_path / "r.json").read_text())
    assert done["job_id"] == killed_job
    # the keys and ids as the first attempt resolved them, not from the emptied tables
    assert done["request"]["unknown_ids"] == 0
    assert all(k["count"] > 0 for k in done["keys_resolved"]), done["keys_resolved"]
    pristine = FormatLake.open(converted[fmt])  # (Iceberg's: a conversion of its own)
    tables = done["logical"]["tables"]
    assert set(tables) == set(flake.tables())
    for table, e in tables.items():
        assert e["rows_before"] == get(fmt).row_count(pristine, table), table
        assert e["rows_after"] == get(fmt).row_count(FormatLake.open(flake.root), table)
        assert e["rows_deleted"] == e["rows_matched"] == e["rows_before"] - e["rows_after"]
    first = next(iter(tables.values()))  # the killed attempt's DELETE
    assert first["rows_deleted"] > 0 and first["this_attempt"]["rows_deleted"] == 0
    assert [e.get("stopped_before_its_checks") for e in tables.values()] == \
        [True] + [None] * (len(tables) - 1)
    assert run_audit(Lake.open(flake.root), parse_ids(ids).ids, names=False).clean


def test_a_re_run_does_not_pass_what_its_first_attempt_failed(
        format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A DELETE that took a row it should have kept fails the job; its re-run, whose DELETE
    finds nothing left to take, still checks the table against the first attempt's counts
    and fails too: the lost row is not forgotten by running the command again."""
    flake = fresh("ducklake", converted, format_src, tmp_path / "dl")
    fmt_type = type(get("ducklake"))
    real = fmt_type.delete
    kept = int(pc.min(pq.read_table(format_src / "customers", columns=["customer_id"])
                      ["customer_id"]).as_py())

    def too_greedy(self, flake, table, column, keys):  # noqa: ANN001, ANN202
        if column == "customer_id":  # one kept customer's rows go too
            keys = pa.concat_arrays([keys, pa.array([kept], keys.type)])
        return real(self, flake, table, column, keys)

    scrub = ["scrub", "--lake", str(flake.root), "--strategy", "ducklake", "--ids", "7"]
    with monkeypatch.context() as m:
        m.setattr(fmt_type, "delete", too_greedy)
        r = runner.invoke(app, scrub)
    assert r.exit_code == 1 and "rows after, expected" in r.output, r.output
    r = runner.invoke(app, scrub)
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "rows after, expected" in out, out
