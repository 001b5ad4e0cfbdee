"""The scrub erases exactly the customers' rows — every table, region and replica — and keeps
every other row unchanged; the audit then finds nothing."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import signal
from itertools import count
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generators.schemas import TABLES
from pipeline.audit import run_audit
from pipeline.intake import ErasureRequest
from pipeline.lake import Lake, LakeError
from pipeline.scrub import run_scrub
from tests.pipeline.conftest import lake_digest, lake_state, snapshot

STRATEGIES = ("arrow", "duckdb", "polars")
_n = count()


def request(ids: list[int]) -> ErasureRequest:
    return ErasureRequest(np.unique(np.array(ids, np.int64)), dt.datetime.now(dt.UTC), "test", 0)


def read_all(lake: Path, table: str) -> pl.DataFrame:
    """Every row of a table, replicas included, with its path partition columns."""
    return pl.read_parquet(lake / table / "**" / "*.parquet", hive_partitioning=True)


@functools.cache
def read_source(src: Path, table: str) -> pl.DataFrame:
    """read_all of a session's source lake, read once (it never changes: checked at the
    session's end)."""
    return read_all(src, table)


def expected_after(src: Path, ids: list[int]) -> dict[str, pl.DataFrame]:
    """What each table must hold after erasing `ids`, computed independently with Polars joins
    through the lineage (not with any pipeline code)."""
    c = pl.Series("customer_id", ids, dtype=pl.Int64)
    rec = read_source(src, "recordings").filter(pl.col("customer_id").is_in(c.implode()))
    links = read_source(src, "skill_links").filter(pl.col("customer_id").is_in(c.implode()))
    out = {}
    for name in TABLES:
        df = read_source(src, name)
        if name == "actions":
            df = df.filter(~pl.col("recording_id").is_in(rec["recording_id"].implode()))
        elif name == "skill_events":
            df = df.filter(~pl.col("skill_user_id").is_in(links["skill_user_id"].implode()))
        else:
            df = df.filter(~pl.col("customer_id").is_in(c.implode()))
        out[name] = df
    return out


def assert_same_rows(a: pl.DataFrame, b: pl.DataFrame, name: str) -> None:
    cols = sorted(a.columns)
    a = a.select(cols).with_columns(pl.col(pl.Categorical).cast(pl.String))
    b = b.select(cols).with_columns(pl.col(pl.Categorical).cast(pl.String))
    key = [c for c in cols if c not in ("payload",)]
    assert a.height == b.height, f"{name}: {a.height} rows, expected {b.height}"
    assert a.sort(key).equals(b.sort(key)), name


def check_scrub(src: Path, work: Path, ids: list[int], strategy: str) -> dict:
    lake_dir = snapshot(src, work)
    before = lake_state(src)
    outcome = run_scrub(Lake.open(lake_dir), request(ids), strategy, workers=2)
    receipt = outcome.receipt
    assert receipt["verification"]["passed"]
    expected = expected_after(src, ids)
    for name in TABLES:
        assert_same_rows(read_all(lake_dir, name), expected[name], name)
    report = run_audit(Lake.open(lake_dir), np.array(ids))
    assert report.clean, report.residue[:5]
    assert report.visible_rows == 0 and report.hidden_rows == 0
    assert not list(lake_dir.rglob("*.tmp")), "temp files survived"
    assert lake_state(src) == before, "the scrub wrote into a file of the source snapshot"
    m = json.loads((lake_dir / "_lake.json").read_text())
    for name in TABLES:
        assert m["tables"][name]["rows"] == expected[name].filter(
            (pl.col("region") == pl.col("origin")) if "origin" in expected[name].columns
            else pl.lit(True)).height
    return receipt


customer_ids = st.lists(st.integers(1, 40), min_size=1, max_size=12) | st.lists(
    st.integers(1, 2000), min_size=1, max_size=5)  # ids beyond the population are absent


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("layout", ["date_src", "bucket_src"])
@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=customer_ids)
def test_scrub_erases_exactly_the_customers(request: pytest.FixtureRequest, tmp_path: Path,
                                            layout: str, strategy: str,
                                            ids: list[int]) -> None:
    src = request.getfixturevalue(layout)
    check_scrub(src, tmp_path / f"lake{next(_n)}", ids, strategy)


def test_customers_without_skill_links_and_unknown_ids(date_src: Path, tmp_path: Path) -> None:
    links = read_all(date_src, "skill_links")["customer_id"].unique().to_list()
    customers = read_all(date_src, "customers")["customer_id"].to_list()
    no_links = [c for c in customers if c not in set(links)][:3]
    assert no_links
    receipt = check_scrub(date_src, tmp_path / "lake", [*no_links, 10**9], "arrow")
    assert receipt["request"]["unknown_ids"] == 1
    assert receipt["request"]["ids"] == 4


def test_bucket_layout_rewrites_only_files_that_hold_the_customers(bucket_src: Path,
                                                                   tmp_path: Path) -> None:
    ids = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38]
    truly = set()
    rec = read_all(bucket_src, "recordings").filter(pl.col("customer_id").is_in(ids))
    links = read_all(bucket_src, "skill_links").filter(pl.col("customer_id").is_in(ids))
    for name in TABLES:
        for p in sorted((bucket_src / name).rglob("*.parquet")):
            df = pl.read_parquet(p)
            if name == "actions":
                hit = df["recording_id"].is_in(rec["recording_id"].implode()).any()
            elif name == "skill_events":
                hit = df["skill_user_id"].is_in(links["skill_user_id"].implode()).any()
            else:
                hit = df["customer_id"].is_in(ids).any()
            if hit:
                truly.add(p.relative_to(bucket_src).as_posix())
    receipt = check_scrub(bucket_src, tmp_path / "lake", ids, "arrow")
    assert receipt["totals"]["files_rewritten"] == len(truly)
    skipped = sum(r["files_skipped_by_bucket"] for t in receipt["tables"].values()
                  for r in t.values())
    assert skipped > 0  # routing, not scanning, ruled most files out
    journal = json.loads((tmp_path / "lake" / "_scrub" / "receipts" /
                          f"{receipt['job_id']}.json").read_text())
    assert journal["totals"]["files_rewritten"] == len(truly)


def test_rewritten_files_keep_schema_and_writer_settings(date_src: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lake_dir = snapshot(date_src, tmp_path / "lake")
    run_scrub(Lake.open(lake_dir), request(list(range(1, 30))), "duckdb", workers=2)
    for name in ("audio", "recordings", "transcripts"):
        for p in sorted((lake_dir / name).rglob("*.parquet"))[:3]:
            old = pq.ParquetFile(date_src / p.relative_to(lake_dir))
            new = pq.ParquetFile(p)
            assert new.schema_arrow.equals(old.schema_arrow)
            for i in range(new.metadata.num_columns):
                a, b = old.metadata.row_group(0).column(i), new.metadata.row_group(0).column(i)
                assert (a.compression, a.path_in_schema) == (b.compression, b.path_in_schema)
                assert ("RLE_DICTIONARY" in a.encodings) == ("RLE_DICTIONARY" in b.encodings)


def test_receipt_names_no_raw_id_and_rerun_is_noop(date_src: Path, tmp_path: Path) -> None:
    lake_dir = snapshot(date_src, tmp_path / "lake")
    ids = [4, 8, 15, 16, 23, 42]
    first = run_scrub(Lake.open(lake_dir), request(ids), "polars", workers=2)
    text = first.receipt_path.read_text()
    r = json.loads(text)
    assert len(r["request"]["ids_hashed"]) == len(ids)
    assert all(len(h) == 32 for h in r["request"]["ids_hashed"])
    for key in ("engine_versions", "timings_s", "tables", "verification"):
        assert r[key]
    t = r["timings_s"]
    assert {"resolve", "execute", "verify", "total"} <= set(t)
    # files were planned and rewritten inside the execution, by the workers
    assert t["workers_plan"] > 0 and t["workers_rewrite"] > 0
    assert t["resolve"] + t["execute"] + t["verify"] <= t["total"] + 1e-3  # each rounded
    digest = lake_digest(lake_dir)
    again = run_scrub(Lake.open(lake_dir), request(ids), "polars", workers=2)
    assert again.already_done
    assert lake_digest(lake_dir) == digest


def test_deep_verification(date_src: Path, tmp_path: Path) -> None:
    lake_dir = snapshot(date_src, tmp_path / "lake")
    out = run_scrub(Lake.open(lake_dir), request([1, 2, 3]), "arrow", verify="deep")
    v = out.receipt["verification"]
    assert v["passed"] and v["keys_left_on_rescan"] == 0


def test_verification_rereads_a_footer_it_cannot_tie_to_the_checked_file(
        date_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake_dir = snapshot(date_src, tmp_path / "lake")
    ids = [5, 6, 7]
    plain = run_scrub(Lake.open(snapshot(date_src, tmp_path / "plain")), request(ids), "arrow")
    v = plain.receipt["verification"]
    # every new footer was checked at commit; none needed parsing again
    assert v["footers_checked"] == plain.receipt["totals"]["files_rewritten"] > 0
    assert v["footers_reread"] == 0

    import pipeline.scrub as scrub_module

    real = scrub_module.make_durable

    def durable_then_swap(root: Path, paths: list[str]) -> None:
        real(root, paths)
        # after the commits, something puts the original file back under one new path
        tmp = root / (paths[0] + ".swap")
        tmp.write_bytes((date_src / paths[0]).read_bytes())
        os.replace(tmp, root / paths[0])

    monkeypatch.setattr(scrub_module, "make_durable", durable_then_swap)
    copy = tmp_path / "receipt.json"
    with pytest.raises(scrub_module.VerificationError, match="footer row count differs") as e:
        run_scrub(Lake.open(lake_dir), request(ids), "arrow", receipt_path=copy)
    # the --receipt copy of a failed job is written too, and says it failed
    assert f"copied to {copy}" in str(e.value) and "re-run the same command" in str(e.value)
    failed = json.loads(copy.read_text())
    assert not failed["verification"]["passed"] and failed["verification"]["failures"]
    job = failed["job_id"]
    kept = lake_dir / "_scrub" / "receipts" / f"{job}.failed-1.json"
    assert json.loads(kept.read_text()) == failed
    with pytest.raises(LakeError, match=f"job {job} on this lake failed verification"):
        run_scrub(Lake.open(lake_dir), request([9]), "arrow")  # another job waits


def test_a_rerun_after_a_failed_verification_finishes_and_keeps_the_failed_receipt(
        date_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.scrub as scrub_module

    lake_dir = snapshot(date_src, tmp_path / "lake")
    real = scrub_module.verify_scrub

    def fails(*args, **kwargs) -> dict:  # noqa: ANN002, ANN003
        return {**real(*args, **kwargs), "passed": False, "failures": ["injected"]}

    monkeypatch.setattr(scrub_module, "verify_scrub", fails)
    with pytest.raises(scrub_module.VerificationError, match="injected"):
        run_scrub(Lake.open(lake_dir), request([5, 6]), "arrow")
    monkeypatch.setattr(scrub_module, "verify_scrub", real)
    done = run_scrub(Lake.open(lake_dir), request([5, 6]), "arrow")  # the same command
    job = done.receipt["job_id"]
    assert done.receipt["verification"]["passed"] and done.receipt["resumed"]
    assert done.receipt["failed_attempts"] == [f"{job}.failed-1.json"]
    failed = json.loads((done.receipt_path.parent / f"{job}.failed-1.json").read_text())
    assert failed["verification"]["failures"] == ["injected"]
    assert run_audit(Lake.open(lake_dir), np.array([5, 6]), names=False).clean


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_lake_under_partition_like_directories_is_scrubbed_alike(bucket_src: Path,
                                                                   tmp_path: Path,
                                                                   strategy: str) -> None:
    """Under `.../date=2020-01-01/` the duckdb strategy read usage_daily's own `date` column
    from that directory (DuckDB's Hive detection on a single file) and wrote it into every
    kept row, and verification passed. The lake's path must change no byte of the result."""
    plain = snapshot(bucket_src, tmp_path / "plain")
    odd = snapshot(bucket_src, tmp_path / "date=2020-01-01" / "region=zz" / "lake")
    for lake in (plain, odd):
        run_scrub(Lake.open(lake), request([1, 2, 3]), strategy, workers=1)
    digest = {k: v for k, v in lake_digest(plain).items() if k.endswith(".parquet")}
    assert {k: v for k, v in lake_digest(odd).items() if k.endswith(".parquet")} == digest


def test_workers_do_not_change_the_result(date_src: Path, tmp_path: Path) -> None:
    ids = [5, 6, 7, 8]
    a = snapshot(date_src, tmp_path / "a")
    b = snapshot(date_src, tmp_path / "b")
    run_scrub(Lake.open(a), request(ids), "arrow", workers=1)
    run_scrub(Lake.open(b), request(ids), "arrow", workers=os.cpu_count() or 2)
    da = {k: v for k, v in lake_digest(a).items() if k.endswith(".parquet")}
    db = {k: v for k, v in lake_digest(b).items() if k.endswith(".parquet")}
    assert da == db


def _parquet_open_under(root: Path) -> list[str]:
    """Parquet files (and temp files) under `root` this process holds open, deleted or not
    (a source replaced by its rewrite reads back as "… (deleted)")."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
        except OSError:
            continue
        if target.startswith(str(root)) and (target.endswith(".parquet") or ".tmp" in target):
            held.append(target)
    return held


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_job_leaves_no_file_open(date_src: Path, tmp_path: Path, strategy: str) -> None:
    """The plan hands its open source file to the rewrite; every one is closed by the end."""
    lake = snapshot(date_src, tmp_path / "lake").resolve()
    out = run_scrub(Lake.open(lake), request([3, 4, 10**9]), strategy, workers=2)
    assert out.plan.touched
    assert all(fp.source is None for fp in out.plan.files)
    assert not _parquet_open_under(lake)


def test_a_failed_rewrite_leaves_no_file_open(date_src: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A strategy that fails mid-rewrite: the job stops, and neither the plan's open source
    nor the temp file is left open (the exception's frames would otherwise keep them)."""
    from pipeline.strategies.cow_arrow import ArrowRewrite

    def fail(self, task):  # noqa: ANN001, ANN202
        task.source.read_row_group(0)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ArrowRewrite, "rewrite", fail)
    lake = snapshot(date_src, tmp_path / "lake").resolve()
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_scrub(Lake.open(lake), request([3, 4]), "arrow", workers=2)
    assert not _parquet_open_under(lake)


def test_a_job_on_a_lake_another_job_holds_is_refused(date_src: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.lock import lake_lock

    lake_dir = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake_dir)
    with lake_lock(lake_dir):  # another job, mid-way
        result = CliRunner().invoke(app, ["scrub", "--lake", str(lake_dir), "--ids", "7"])
        assert result.exit_code == 2, result.output
        assert "another job" in result.output
        with pytest.raises(LakeError, match="another job"):
            run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2)
        assert lake_digest(lake_dir) == before
    # released with its holder: the job runs
    assert run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2).receipt


def test_a_request_made_again_after_the_lake_changed_is_a_new_job(date_src: Path,
                                                                   tmp_path: Path) -> None:
    lake_dir = snapshot(date_src, tmp_path / "lake")
    first = run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2)
    copy = tmp_path / "copy.json"
    again = run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2, receipt_path=copy)
    assert again.already_done  # nothing changed: a no-op, its receipt handed out again
    assert json.loads(copy.read_text())["job_id"] == first.receipt["job_id"]
    run_scrub(Lake.open(lake_dir), request([8]), "arrow", workers=2)  # the lake changes
    later = run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2)
    assert not later.already_done
    assert later.receipt["job_id"] == first.receipt["job_id"] + "-1"
    receipts = lake_dir / "_scrub" / "receipts"
    assert (receipts / f"{first.receipt['job_id']}.json").exists()  # the first one is kept
    assert (receipts / f"{later.receipt['job_id']}.json").exists()
    assert run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2).already_done


def test_a_finished_request_is_not_done_when_rows_came_back_behind_the_manifest(
        date_src: Path, tmp_path: Path) -> None:
    lake_dir = snapshot(date_src, tmp_path / "lake")
    run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2)
    original = sorted((date_src / "customers").rglob("*.parquet"))[0]
    stray = lake_dir / original.relative_to(date_src).with_name("part-00099.parquet")
    stray.write_bytes(original.read_bytes())  # customer 7's row is back, unlisted
    with pytest.raises(LakeError, match="not in the manifest"):
        run_scrub(Lake.open(lake_dir), request([7]), "arrow", workers=2)


def test_no_other_job_runs_while_a_killed_one_is_unfinished(date_src: Path,
                                                            tmp_path: Path) -> None:
    """A job killed after its manifest update, then another job, then the first resumed: the
    second would rewrite the killed one's files and the resume write stale counts. So the
    second is refused until the first is finished by its own command."""
    from pipeline import faults

    lake_dir = snapshot(date_src, tmp_path / "lake")

    def die(point: str) -> None:
        if point == "after_manifest":
            raise KeyboardInterrupt  # stands for the kill
    real = faults.crashpoint
    try:
        faults.crashpoint = die
        import pipeline.scrub as scrub_mod
        scrub_mod.crashpoint = die
        with pytest.raises(KeyboardInterrupt):
            run_scrub(Lake.open(lake_dir), request([7, 8]), "arrow", workers=2)
    finally:
        faults.crashpoint = real
        scrub_mod.crashpoint = real
    with pytest.raises(LakeError, match="interrupted and has not finished"):
        run_scrub(Lake.open(lake_dir), request([9]), "arrow", workers=2)
    assert not run_scrub(Lake.open(lake_dir), request([7, 8]), "arrow", workers=2).already_done
    assert run_scrub(Lake.open(lake_dir), request([9]), "arrow", workers=2).receipt[
        "verification"]["passed"]
    assert run_audit(Lake.open(lake_dir), np.array([7, 8, 9]), names=False).clean


def test_a_plan_that_matched_a_row_without_a_key_fails_its_commit(
        date_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The arrow strategy erases the positions the plan matched, so "rows erased = rows the
    plan found" holds whatever the plan did: the rows at those positions are checked to hold a
    key, and a rewrite that would erase one without fails before its rename."""
    from pipeline.commit import CommitError
    from pipeline.plan import Planner

    real = Planner.plan_file

    def off_by_one(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        fp = real(self, *a, **k)
        for i, rows in (fp.erase_rows or {}).items():
            n = fp.source.metadata.row_group(i).num_rows if fp.source else 0
            free = np.setdiff1d(np.arange(n), rows)
            if len(free):  # one of the matched rows swapped for a row that holds no key
                rows[0] = free[0]
                break
        return fp

    monkeypatch.setattr(Planner, "plan_file", off_by_one)
    lake_dir = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake_dir)
    with pytest.raises(CommitError, match="erased rows hold no key"):
        run_scrub(Lake.open(lake_dir), request([5, 6, 7]), "arrow", workers=1)
    # one worker: the first file the plan touched failed, so no data file changed
    after = lake_digest(lake_dir)
    assert {k: v for k, v in after.items() if not k.startswith("_scrub/")} == before


def test_the_receipt_counts_the_erased_rows_checked_for_a_key(date_src: Path,
                                                              tmp_path: Path) -> None:
    out = run_scrub(Lake.open(snapshot(date_src, tmp_path / "lake")), request([5, 6, 7]),
                    "arrow")
    v = out.receipt["verification"]
    assert v["erased_rows_checked_for_a_key"] == out.receipt["totals"]["rows_erased"] > 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("dry_run", [False, True])
def test_ctrl_c_while_keys_resolve_says_nothing_was_touched(
        date_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dry_run: bool,
        signum: int) -> None:
    """The signal arrives while the first mapping table's files are planned: planning stops
    after the files in flight, and the command says no data file was touched."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.plan import Planner

    real, calls = Planner.plan_file, []

    def signalled(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)
        return real(self, *a, **k)

    monkeypatch.setattr(Planner, "plan_file", signalled)
    lake_dir = snapshot(date_src, tmp_path / "lake")
    before = {k: v for k, v in lake_digest(lake_dir).items() if not k.startswith("_scrub/")}
    result = CliRunner().invoke(app, ["scrub", "--lake", str(lake_dir), "--ids", "7",
                                      *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 128 + signum, result.output
    said = " ".join(result.output.split())
    assert ("a dry run writes nothing" if dry_run else "before the job started: no data file "
            "was touched") in said
    after = lake_digest(lake_dir)
    assert {k: v for k, v in after.items() if not k.startswith("_scrub/")} == before
    assert not [k for k in after if k.startswith("_scrub/") and k != "_scrub/receipt.key"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_erased_value_stays_in_a_dictionary(tmp_path: Path, strategy: str) -> None:
    """A dictionary-typed column (as pyarrow writes one from a dictionary array), in a list
    or a struct too: the erased rows' values must leave the file's dictionary pages, not only
    its rows."""
    lake = tmp_path / "shop"
    (lake / "users" / "region=eu").mkdir(parents=True)
    path = lake / "users" / "region=eu" / "part-0.parquet"
    emails = pa.array(["a@x.io", "secret@y.io", "c@x.io"]).dictionary_encode()
    aliases = pa.array(["al", "secret-alias", "cy"]).dictionary_encode()  # inside lists
    pq.write_table(pa.table({
        "customer_id": [1, 2, 3], "email": emails,
        "aliases": pa.ListArray.from_arrays(pa.array([0, 1, 2, 3], pa.int32()), aliases),
        "contact": pa.StructArray.from_arrays([emails.cast(pa.string()).dictionary_encode()],
                                              names=["backup"])}), path, compression="none")
    spec = {"subject": "customer_id", "tables": {"users": {"customer_id": "customer_id"}}}
    (tmp_path / "lineage.json").write_text(json.dumps(spec))
    assert b"secret@y.io" in path.read_bytes() and b"secret-alias" in path.read_bytes()

    def encodings() -> dict[str, tuple[str, ...]]:
        rg = pq.ParquetFile(path).metadata.row_group(0)
        return {rg.column(i).path_in_schema: rg.column(i).encodings
                for i in range(rg.num_columns)}
    before = encodings()
    run_scrub(Lake.open(lake, tmp_path / "lineage.json"), request([2]), strategy)
    assert encodings() == before  # nested leaves dictionary-encoded as in the source
    kept = pq.read_table(path)
    assert kept["email"].to_pylist() == ["a@x.io", "c@x.io"]
    assert kept["aliases"].to_pylist() == [["al"], ["cy"]]
    assert kept["contact"].to_pylist() == [{"backup": "a@x.io"}, {"backup": "c@x.io"}]
    # nested dictionaries are written whole as well (lists and structs alike)
    assert b"secret@y.io" not in path.read_bytes() and b"secret-alias" not in path.read_bytes()


def test_a_receipt_copy_that_fails_after_the_job_leaves_it_finished(date_src: Path,
                                                                   tmp_path: Path) -> None:
    """The --receipt copy is written once the job is done: if it fails then (the path was
    writable when checked), the job stays finished, its receipt kept in the lake, and the
    lake is open to the next job."""
    from pipeline.journal import Journal
    from pipeline.receipt import ReceiptNotCopied

    lake = snapshot(date_src, tmp_path / "lake")
    with pytest.raises(ReceiptNotCopied, match="the job finished; the receipt is kept at"):
        run_scrub(Lake.open(lake), request([7]), "arrow", workers=1,
                  receipt_path=tmp_path / "gone" / "r.json")
    assert not Journal.unfinished(lake)
    assert run_scrub(Lake.open(lake), request([7]), "arrow", workers=1).already_done
    # a re-run names the receipt the lake keeps, not the job's journal directory
    with pytest.raises(ReceiptNotCopied, match=r"kept at .*/_scrub/receipts/[0-9a-f]+\.json"):
        run_scrub(Lake.open(lake), request([7]), "arrow", workers=1,
                  receipt_path=tmp_path / "gone" / "r.json")
    assert run_scrub(Lake.open(lake), request([8]), "arrow", workers=1).receipt[
        "verification"]["passed"]
