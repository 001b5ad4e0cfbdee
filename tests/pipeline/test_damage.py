"""A data file that cannot be read is named, left as it is, and does not stop the other files;
restored, the same command finishes the job as if nothing had happened."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from generators.config import LakeConfig
from generators.lake import generate
from pipeline import damage as damage_module
from pipeline import scrub as scrub_module
from pipeline.cli import app
from pipeline.damage import read_failure
from pipeline.intake import parse_ids
from pipeline.lake import Lake
from pipeline.rowhash import row_checksum
from pipeline.scrub import plan_scrub, run_scrub
from pipeline.strategies.cow_arrow import ArrowRewrite
from tests.pipeline.cli_child import run_cli
from tests.pipeline.conftest import TINY, lake_digest, snapshot
from tests.pipeline.test_faults import IDS, data_state

runner = CliRunner()


def damage(lake: Path, rel: str, column: str) -> None:
    """Garble the first page header of `column` in row group 0: the file keeps its size (so
    it still matches the manifest) and no reader can decode that column. The file is written
    anew, not in place: the lake is a hard-linked snapshot of the shared test lake."""
    path = lake / rel
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(0)
    cc = next(rg.column(i) for i in range(rg.num_columns)
              if rg.column(i).path_in_schema == column)
    at = cc.dictionary_page_offset if cc.has_dictionary_page else cc.data_page_offset
    data = bytearray(path.read_bytes())
    data[at:at + 24] = b"\xff" * 24
    path.unlink()
    path.write_bytes(bytes(data))


def touched(lake: Path, table: str) -> str:
    plan = plan_scrub(Lake.open(lake), parse_ids(IDS), workers=2)
    return next(fp.file.path for fp in plan.touched if fp.file.table == table)


def scrub(lake: Path, ids: str = IDS, *args: str):  # noqa: ANN201
    return runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", ids, "--workers", "2",
                               *args])


@pytest.fixture(scope="module")
def reference(date_src: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    lake = snapshot(date_src, tmp_path_factory.mktemp("ref") / "lake")
    run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)
    return data_state(lake)


def test_unreadable_files_are_named_then_restored_and_finished(
        date_src: Path, tmp_path: Path, reference: tuple[dict, dict]) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    fact, link = touched(lake, "transcripts"), touched(lake, "recordings")
    damage(lake, fact, "text")  # a column the plan does not read: found by the rewrite
    damage(lake, link, "intent")  # in a mapping table, which is rewritten last
    before = lake_digest(lake)

    result = scrub(lake)
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "2 data file(s) cannot be read" in out
    assert f"{fact}: " in out and f"{link}: " in out
    assert "re-run the same command to finish it" in out
    after = lake_digest(lake)
    assert after[fact] == before[fact] and after[link] == before[link]  # left as they were
    # the other fact files are erased; the mapping tables keep their links (the audit and
    # the resumed job follow them to the rows the unreadable file still holds)
    changed = {p for p in before if p.endswith(".parquet") and after.get(p) != before[p]}
    assert any(p.startswith("transcripts/") for p in changed)
    assert not any(p.startswith(("recordings/", "devices/", "skill_links/")) for p in changed)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"
    # the half-done job must finish before another may start
    other = scrub(lake, "4,6")
    assert other.exit_code == 2 and "interrupted and has not finished" in other.output

    for rel in (fact, link):
        (lake / rel).unlink()
        shutil.copyfile(date_src / rel, lake / rel)
    assert scrub(lake).exit_code == 0
    assert data_state(lake) == reference


def test_dry_run_names_an_unreadable_key_column(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    rel = touched(lake, "actions")
    damage(lake, rel, "recording_id")
    before = lake_digest(lake)
    result = scrub(lake, IDS, "--dry-run")
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert "1 data file(s) cannot be read" in out and rel in out
    assert "Nothing was changed" in out
    assert lake_digest(lake) == before


def test_a_failure_of_the_job_is_raised_as_it_was(date_src: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lake = snapshot(date_src, tmp_path / "lake")

    def broken(self, task):  # noqa: ANN001, ANN202
        task.dst.write_bytes(b"half a file")
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(ArrowRewrite, "rewrite", broken)
    with pytest.raises(RuntimeError, match="the engine broke") as info:
        run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)
    assert any("which reads without error" in n for n in info.value.__notes__)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"


def test_read_failure(date_src: Path, tmp_path: Path) -> None:
    rel = next(p.relative_to(date_src).as_posix() for p in sorted(date_src.rglob("*.parquet")))
    assert read_failure(date_src / rel) is None
    cut = tmp_path / "cut.parquet"
    cut.write_bytes((date_src / rel).read_bytes()[:-100])
    assert read_failure(cut).startswith("ArrowInvalid: ")
    assert read_failure(tmp_path / "missing.parquet").startswith("FileNotFoundError: ")


def test_page_checksums_stop_a_flipped_byte_from_being_rewritten(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """In an uncompressed payload no codec notices a flipped byte; with `--page-checksums`
    the arrow strategy's reader does, and the file is named instead of rewritten."""
    src = tmp_path_factory.mktemp("crc") / "lake"
    generate(LakeConfig(layout="date", workers=1, page_checksums=True, **TINY), src)
    manifest = json.loads((src / "_lake.json").read_text())
    assert manifest["tables"]["audio"]["writer"]["write_page_checksum"] is True
    lake = snapshot(src, tmp_path / "lake")
    rel = touched(lake, "audio")
    md = pq.ParquetFile(lake / rel).metadata
    cc = next(md.row_group(0).column(i) for i in range(md.num_columns)
              if md.row_group(0).column(i).path_in_schema == "payload")
    assert cc.compression == "UNCOMPRESSED"
    data = bytearray((lake / rel).read_bytes())
    data[cc.data_page_offset + cc.total_compressed_size // 2] ^= 0x01
    (lake / rel).unlink()
    (lake / rel).write_bytes(bytes(data))
    result = scrub(lake)
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert f"{rel}: OSError: could not verify page integrity, CRC checksum" in out


@pytest.mark.parametrize("error", [OSError(errno.EMFILE, "Too many open files"),
                                   MemoryError(), pa.ArrowMemoryError("malloc of 1 GiB failed")])
def test_a_machine_failure_names_no_file(date_src: Path, tmp_path: Path, error: Exception,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of file descriptors or memory, in the rewrite and in the check of its source alike:
    not a damaged file to restore."""
    lake = snapshot(date_src, tmp_path / "lake")

    def fails(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(ArrowRewrite, "rewrite", fails)
    monkeypatch.setattr(damage_module.pq, "ParquetFile", fails)
    with pytest.raises(type(error)):
        run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)


def test_a_check_that_fails_leaves_no_temp_file(date_src: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lake = snapshot(date_src, tmp_path / "lake")

    def broken_check(*_: object) -> None:
        raise RuntimeError("the check broke")

    monkeypatch.setattr(scrub_module, "check_rewrite", broken_check)
    with pytest.raises(RuntimeError, match="the check broke"):
        run_scrub(Lake.open(lake), parse_ids(IDS), "arrow", workers=2)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"


def test_invalid_utf8_is_a_read_failure(tmp_path: Path) -> None:
    """pyarrow decodes it; DuckDB and Polars refuse it: the full check must see it."""
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(
        np.array([0, 2], np.int32).tobytes()), pa.py_buffer(b"\xff\xfe")])
    pq.write_table(pa.table({"s": bad}), tmp_path / "bad.parquet")
    assert "Invalid UTF8" in read_failure(tmp_path / "bad.parquet")


def _flip_until_duckdb_refuses(lake: Path, rel: str, column: str) -> None:
    """Flip one bit at a time in the first page header of `column` until DuckDB's reader
    refuses the file while pyarrow still reads all of it (DuckDB checks some page-header
    fields that pyarrow ignores); the file is written anew, never in place."""
    import duckdb

    path = lake / rel
    original = path.read_bytes()
    rg = pq.ParquetFile(path).metadata.row_group(0)
    cc = next(rg.column(i) for i in range(rg.num_columns)
              if rg.column(i).path_in_schema == column)
    con = duckdb.connect(config={"threads": 1})
    for offset in range(32):
        data = bytearray(original)
        data[cc.data_page_offset + offset] ^= 1
        # Each candidate under a name of its own: DuckDB's file cache serves the bytes it read
        # before from a path whose size and modification time look unchanged (a rewrite within
        # one clock tick), which made this search depend on timing (a flaky test).
        candidate = lake.parent / f"flip-{offset}.parquet"
        candidate.write_bytes(bytes(data))
        try:
            con.execute("SELECT * FROM read_parquet(?)", [str(candidate)]).to_arrow_table()
        except duckdb.Error:
            if read_failure(candidate) is None:
                candidate.replace(path)  # a new inode: the hard-linked source stays intact
                return
        candidate.unlink()
    pytest.fail("no single-bit flip made DuckDB refuse a file pyarrow reads")


def test_a_file_only_the_engine_refuses_is_named_and_arrow_finishes_the_job(
        date_src: Path, tmp_path: Path) -> None:
    reference_lake = snapshot(date_src, tmp_path / "reference")
    run_scrub(Lake.open(reference_lake), parse_ids(IDS), "arrow", workers=2)
    lake = snapshot(date_src, tmp_path / "lake")
    rel = touched(lake, "transcripts")
    _flip_until_duckdb_refuses(lake, rel, "recording_id")
    damaged = (lake / rel).read_bytes()

    result = scrub(lake, IDS, "--strategy", "duckdb")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "1 data file(s) cannot be read" in out
    assert f"{rel}: DuckDB cannot read it" in out and "pyarrow reads it in full" in out
    assert "with `--strategy arrow` to finish it" in out
    assert "Traceback" not in result.output
    assert (lake / rel).read_bytes() == damaged  # left as it was
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")], "temp files survived"

    # the same customers, another strategy: the same job, finished, the same rows kept (the
    # files DuckDB wrote are grouped into row groups its own way, so rows are compared)
    assert scrub(lake, IDS, "--strategy", "arrow").exit_code == 0
    assert _rows(lake) == _rows(reference_lake)
    assert _manifest_rows(lake) == _manifest_rows(reference_lake)


def _manifest_rows(lake: Path) -> dict[str, tuple]:
    m = json.loads((lake / "_lake.json").read_text())
    return {t: (v["rows"], v["replica_rows"], sorted((f["path"], f["rows"]) for f in v["files"]))
            for t, v in m["tables"].items()}


def _rows(lake: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(lake).as_posix(): (pq.ParquetFile(p).metadata.num_rows,
                                             row_checksum(pq.read_table(p)))
            for p in sorted(lake.rglob("*.parquet")) if "_scrub" not in p.parts}


def test_engine_batches_tells_a_refusal_from_a_query_error() -> None:
    from pipeline.damage import EngineRefused
    from pipeline.strategies.base import engine_batches

    def failing(exc: BaseException):  # noqa: ANN202
        def reader():  # noqa: ANN202
            yield 1
            raise exc
        return reader

    def refusal(e: BaseException) -> bool:
        return isinstance(e, ValueError)

    it = engine_batches("Engine", failing(ValueError("bad page header")), refusal)
    assert next(it) == 1
    with pytest.raises(EngineRefused, match="Engine cannot read it: ValueError: bad page"):
        next(it)
    # a query error is the job's own, not the file's
    with pytest.raises(KeyError):
        list(engine_batches("Engine", failing(KeyError("no such column")), refusal))
    # the machine's failures, in an engine's words, are not the file's either
    with pytest.raises(ValueError, match="Too many open files"):
        list(engine_batches("Engine", failing(ValueError("IO Error: Too many open files")),
                            refusal))
    # opening the reader counts as reading
    def refuses_to_open():  # noqa: ANN202
        raise ValueError("not a Parquet file")
    with pytest.raises(EngineRefused):
        list(engine_batches("Engine", refuses_to_open, refusal))


def _lie_in_statistics(lake: Path, table: str) -> tuple[str, int]:
    """Make one file's row-group statistics exclude a customer it holds: the footer's max of
    customer_id becomes its min (same size, so the file still matches the manifest). Returns
    the file and the hidden customer."""
    for f in Lake.open(lake).files(table):
        path = lake / f.path
        ids = pq.read_table(path, columns=["customer_id"])["customer_id"].to_numpy()
        lo, hi = int(ids.min()), int(ids.max())
        if lo < hi and pq.ParquetFile(path).metadata.num_row_groups == 1:
            break
    data = path.read_bytes()
    flen = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - flen
    footer = data[start:-8].replace(int(hi).to_bytes(8, "little", signed=True),
                                    int(lo).to_bytes(8, "little", signed=True))
    path.unlink()  # a hard-linked snapshot: never write into the shared file
    path.write_bytes(data[:start] + footer + data[-8:])
    stats = pq.ParquetFile(path).metadata.row_group(0).column(
        pq.ParquetFile(path).schema_arrow.names.index("customer_id")).statistics
    assert stats.max == lo  # the lie took
    return f.path, hi


def test_deep_verification_trusts_no_footer_statistics(date_src: Path, tmp_path: Path) -> None:
    """Statistics that exclude a key the file holds make the plan skip it; `--verify deep`
    reads every key column instead, so it erases those rows, and its rescan names a file that
    a plan made with the statistics skipped."""
    lake = snapshot(date_src, tmp_path / "lake")
    rel, hidden = _lie_in_statistics(lake, "transcripts")
    request = parse_ids(str(hidden))
    plan = plan_scrub(Lake.open(lake), request, workers=1)
    skipped = {fp.file.path: fp.pruned_by for fp in plan.files}
    assert skipped[rel] == "stats"  # what the default plan does with the lie
    deep_plan = plan_scrub(Lake.open(lake), request, workers=1, trust_metadata=False)
    assert {fp.file.path: fp for fp in deep_plan.files}[rel].touched  # --dry-run --verify deep

    failures = scrub_module.verify_scrub(Lake.open(lake), plan, {}, {}, deep=True,
                                         workers=1)["failures"]
    assert any(m.startswith(f"{rel}: ") and "row-group statistics" in m for m in failures)

    out = run_scrub(Lake.open(lake), request, "arrow", workers=1, verify="deep")
    assert out.receipt["verification"]["passed"]
    left = pq.read_table(lake / rel, columns=["customer_id"])["customer_id"].to_numpy()
    assert hidden not in left and len(left) > 0


def _customers_in(path: Path) -> np.ndarray:
    return pq.read_table(path, columns=["customer_id"])["customer_id"].to_numpy()


def test_deep_after_a_default_job_is_a_new_job(date_src: Path, tmp_path: Path) -> None:
    """A request already done with footer verification, asked again with `--verify deep`, is
    not answered by the old receipt: a new job trusts no statistic and erases what one hid."""
    lake = snapshot(date_src, tmp_path / "lake")
    rel, hidden = _lie_in_statistics(lake, "transcripts")
    request = parse_ids(str(hidden))
    first = run_scrub(Lake.open(lake), request, "arrow", workers=1)
    assert first.receipt["verification"]["mode"] == "default"
    assert hidden in _customers_in(lake / rel)  # what trusting the lie leaves
    assert run_scrub(Lake.open(lake), request, "arrow", workers=1).already_done

    deep = run_scrub(Lake.open(lake), request, "arrow", workers=1, verify="deep")
    assert not deep.already_done and deep.resumed_first is None
    assert deep.receipt["job_id"] == first.receipt["job_id"] + "-1"
    assert deep.receipt["verification"] == {**deep.receipt["verification"], "mode": "deep",
                                            "passed": True}
    assert hidden not in _customers_in(lake / rel)
    # now both requests are answered by the deep job
    for verify in ("deep", "default"):
        again = run_scrub(Lake.open(lake), request, "arrow", workers=1, verify=verify)
        assert again.already_done and again.receipt["job_id"] == deep.receipt["job_id"]


@pytest.mark.parametrize("point", ["resolved", "after_rename:1"])
def test_a_killed_deep_job_is_finished_by_a_default_rerun(point: str, date_src: Path,
                                                          tmp_path: Path) -> None:
    """The deep job run after a footer-verified one, killed before it changed the manifest:
    the default command finishes it (deep, as it started) rather than answering with the
    first job's receipt or calling the half-rewritten lake damaged."""
    lake = snapshot(date_src, tmp_path / "lake")
    rel, hidden = _lie_in_statistics(lake, "transcripts")
    request = parse_ids(str(hidden))
    first = run_scrub(Lake.open(lake), request, "arrow", workers=1)
    proc = run_cli(["scrub", "--lake", str(lake), "--ids", str(hidden), "--strategy", "arrow",
                    "--workers", "1", "--verify", "deep"], {"VOICESCRUB_CRASH_AT": point},
                   tmp_path)
    assert proc.returncode == -9, proc.stderr[-500:]

    out = run_scrub(Lake.open(lake), request, "arrow", workers=1)
    assert not out.already_done
    assert out.receipt["job_id"] == first.receipt["job_id"] + "-1"
    assert out.receipt["verification"]["mode"] == "deep" and out.receipt["resumed"]
    assert hidden not in _customers_in(lake / rel)
    assert run_scrub(Lake.open(lake), request, "arrow", workers=1).already_done


def test_a_default_job_resumed_deep_finishes_then_verifies_deep(date_src: Path,
                                                                 tmp_path: Path) -> None:
    """A job started with footer verification and killed, re-run with `--verify deep`: it
    finishes as it started (its keys, resolved trusting the statistics), then the next job
    re-resolves and plans trusting nothing, so the hidden rows go too."""
    lake = snapshot(date_src, tmp_path / "lake")
    rel, hidden = _lie_in_statistics(lake, "transcripts")
    proc = run_cli(["scrub", "--lake", str(lake), "--ids", str(hidden), "--strategy", "arrow",
                    "--workers", "1"], {"VOICESCRUB_CRASH_AT": "after_rename:1"}, tmp_path)
    assert proc.returncode == -9, proc.stderr[-500:]

    result = CliRunner().invoke(app, ["scrub", "--lake", str(lake), "--ids", str(hidden),
                                      "--workers", "1", "--verify", "deep"])
    assert result.exit_code == 0, result.output
    assert "finished interrupted job" in result.output and "--verify deep" in result.output
    receipts = [json.loads(p.read_text()) for p in (lake / "_scrub/receipts").glob("*.json")]
    modes = sorted((r["job_id"], r["verification"]["mode"]) for r in receipts)
    assert [m for _, m in modes] == ["default", "deep"]
    assert modes[1][0] == modes[0][0] + "-1"
    assert hidden not in _customers_in(lake / rel)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")]
