"""The table-format strategies (Delta, Iceberg, DuckLake): conversion, the two steps, the audit
of logical and physical residue, and the refusals (failures and re-runs:
test_format_failures.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.audit import run_audit
from pipeline.cli import app
from pipeline.format_scrub import resolve_format_keys, run_format_scrub, run_purge
from pipeline.formats import FormatLake, get
from pipeline.intake import parse_ids
from pipeline.lake import Lake, LakeError
from pipeline.scrub import run_scrub
from tests.pipeline.conftest import lake_digest, snapshot
from tests.pipeline.format_lakes import (
    FORMATS,
    EngineError,
    erasure_request,
    fresh,
    kept_checksums,
)

runner = CliRunner()


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_keeps_every_row(fmt: str, format_src: Path, converted: dict[str, Path]) -> None:
    src = Lake.open(format_src)
    flake = FormatLake.open(converted[fmt])
    f = get(fmt)
    for table in src.manifest["tables"]:
        files = src.files(table)
        want = sum(x.rows for x in files)
        assert f.row_count(flake, table) == want, table
        ids = pa.chunked_array([pq.read_table(format_src / x.path, columns=[
            src.manifest["tables"][table]["keys"][0]]).column(0) for x in files])
        got = pa.chunked_array([b.column(0) for b in f.scan(
            flake, table, [src.manifest["tables"][table]["keys"][0]])])
        assert pc.sum(ids).as_py() == pc.sum(got).as_py(), table
    # only that format's files (and the descriptor) in the new root
    root = converted[fmt]
    assert not any((root / t).is_dir() and fmt != "delta" for t in src.manifest["tables"])
    assert json.loads((root / "_lake.json").read_text())["format"] == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_steps_logical_then_physical(fmt: str, format_src: Path, tmp_path: Path,
                                         n_customers: int, converted: dict[str, Path]) -> None:
    """Customer 1 holds the smallest id of its region's customers file, so every format's
    metadata (log stats, manifest bounds, catalog stats) names it until the purge."""
    flake = fresh(fmt, converted, format_src, tmp_path / fmt)
    ids = [1, 2, n_customers // 2, n_customers + 5]  # the last one is in no table
    keys = resolve_format_keys(flake, get(fmt), np.array(ids, np.int64))
    before = kept_checksums(flake, keys)

    receipt, _ = run_format_scrub(flake, erasure_request(ids), fmt, logical_only=True)
    assert receipt["logical"]["verification"]["passed"]
    assert receipt["request"]["unknown_ids"] == 1
    logical = run_audit(Lake.open(flake.root), np.array(ids), names=False)
    assert logical.visible_rows == 0
    assert logical.hidden_rows > 0, "the logical step must leave the old bytes on disk"
    metadata = [f for f in logical.residue if not f.path.endswith(".parquet")
                or "_delta_log" in f.path]
    assert metadata, "the format's metadata still names an erased customer"
    assert kept_checksums(flake, None) == before

    receipt, _ = run_purge(flake, fmt)
    assert receipt["physical"]["verification"]["passed"]
    assert len(receipt["jobs"]) == 1
    physical = run_audit(Lake.open(flake.root), np.array(ids), names=False)
    assert physical.clean, [(f.path, f.column, f.kind) for f in physical.residue[:5]]
    assert kept_checksums(flake, None) == before
    done = json.loads(next((flake.root / "_scrub").glob("*/done.json")).read_text())
    assert done["state"] == "physically deleted" and done["delete_persistence_latency_s"] > 0
    assert all(len(h) == 32 for h in done["request"]["ids_hashed"])  # hashes, no raw id

    # the same request again: the lake is as the purge left it, a no-op
    again, _ = run_format_scrub(flake, erasure_request(ids), fmt)
    assert again["job_id"] == done["job_id"]
    # once another job changed the lake, the same ids are a new request (the next job)
    run_format_scrub(flake, erasure_request([3]), fmt)
    later, _ = run_format_scrub(flake, erasure_request(ids), fmt)
    assert later["job_id"] == done["job_id"] + "-1"
    assert later["logical"]["verification"]["passed"]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scrub_random_customers(fmt: str, format_src: Path,
                                tmp_path_factory: pytest.TempPathFactory, n_customers: int,
                                converted: dict[str, Path], data: st.DataObject) -> None:
    ids = data.draw(st.lists(st.integers(1, n_customers + 20), min_size=1, max_size=12))
    root = tmp_path_factory.mktemp(f"fmt-{fmt}") / fmt
    flake = fresh(fmt, converted, format_src, root)
    keys = resolve_format_keys(flake, get(fmt), np.unique(np.array(ids, np.int64)))
    before = kept_checksums(flake, keys)
    receipt, _ = run_format_scrub(flake, erasure_request(ids), fmt)  # both steps
    assert receipt["physical"]["verification"]["passed"]
    assert kept_checksums(flake, None) == before
    assert run_audit(Lake.open(flake.root), np.array(sorted(set(ids))), names=False).clean
    # the room check's bound is the files the format did rewrite, no more, no fewer
    step = "logical" if get(fmt).delete_rewrites else "physical"
    removed = sum(t.get("files_removed", 0) for t in receipt[step]["tables"].values())
    assert receipt["room_checked"]["data_files_to_rewrite"] == removed


def test_the_room_bound_follows_a_lineage_with_two_keys_on_a_table(
        format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """Each rule of a table is its own DELETE: a second one rewrites a file only if rows are
    left for it (here none: a customer's recordings are on their own devices)."""
    flake = fresh("delta", converted, format_src, tmp_path / "delta")
    manifest = json.loads((flake.root / "_lake.json").read_text())
    manifest["lineage"]["tables"]["recordings"]["device_id"] = "device_id"
    (flake.root / "_lake.json").write_text(json.dumps(manifest))
    flake = FormatLake.open(flake.root)
    assert len(flake.lineage.rules_for("recordings")) == 2
    receipt, _ = run_format_scrub(flake, erasure_request([3, 4, 5]), "delta")
    removed = sum(t.get("files_removed", 0) for t in receipt["logical"]["tables"].values())
    assert receipt["room_checked"]["data_files_to_rewrite"] == removed > 0
    # the receipt keeps both DELETEs of the table (the second found nothing left)
    rec = receipt["logical"]["tables"]["recordings"]
    first, second = rec["by_column"]
    assert (first["column"], second["column"]) == ("customer_id", "device_id")
    assert rec["rows_deleted"] == first["rows_deleted"] > 0 == second["rows_deleted"]
    assert rec["rows_after"] == rec["rows_before"] - rec["rows_deleted"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_room_for_the_rewrites_is_refused_before_anything_is_written(
        fmt: str, format_src: Path, tmp_path: Path, converted: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import room
    from pipeline.format_scrub import files_holding_keys

    flake = fresh(fmt, converted, format_src, tmp_path / fmt)
    ids = [3, 4, 5]
    keys = resolve_format_keys(flake, get(fmt), np.array(ids, np.int64))
    held = files_holding_keys(flake, get(fmt), keys)
    assert len(held) > 3
    needed = int(sum(b for _, b in held) * room.FORMAT_GROWTH) + room.SLACK
    usage = shutil.disk_usage(flake.root)
    before = lake_digest(flake.root)
    args = ["scrub", "--lake", str(flake.root), "--strategy", fmt, "--ids", "3,4,5"]
    monkeypatch.setattr(room.shutil, "disk_usage", lambda _: usage._replace(free=needed - 1))
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())
    assert f"rewrites the {len(held)} data file(s)" in out and "nothing was written" in out
    assert lake_digest(flake.root) == before
    if not get(fmt).delete_rewrites:
        # its DELETE writes delete files only: room for those; the purge rewrites the files
        r = runner.invoke(app, [*args, "--logical-only"])
        assert r.exit_code == 0, r.output
        purge = ["purge", "--lake", str(flake.root), "--strategy", fmt]
        before = lake_digest(flake.root)
        r = runner.invoke(app, purge)
        assert r.exit_code == 2, r.output
        out = " ".join(r.output.split())
        assert f"purge rewrites the {len(held)} data file(s) there that hold deleted rows" in out
        assert lake_digest(flake.root) == before
        monkeypatch.setattr(room.shutil, "disk_usage", lambda _: usage._replace(free=needed))
        r = runner.invoke(app, purge)
        assert r.exit_code == 0, r.output
        return
    monkeypatch.setattr(room.shutil, "disk_usage", lambda _: usage._replace(free=needed))
    r = runner.invoke(app, args)  # exactly enough
    assert r.exit_code == 0, r.output
    # its purge only deletes files: it runs on a full disk, which is when it is needed
    monkeypatch.setattr(room.shutil, "disk_usage", lambda _: usage._replace(free=0))
    r = runner.invoke(app, ["purge", "--lake", str(flake.root), "--strategy", fmt])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_read_the_format(fmt: str, format_src: Path, converted: dict[str, Path]) -> None:
    from queries.named import run_named
    from queries.views import connect

    flake = FormatLake.open(converted[fmt])
    want = run_named(connect(format_src), "region_volume", {}).fetchall()
    got = run_named(connect(flake.root), "region_volume", {}).fetchall()
    assert sorted(got) == sorted(want)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_named_query_after_a_delete_matches_the_parquet_lake(
        fmt: str, format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """After the format's DELETE (whose rewritten files may type strings differently: Delta
    writes string_view), every named query reads the format's snapshot and answers as on the
    Parquet lake scrubbed of the same customers."""
    from queries.named import list_queries, run_named
    from queries.views import connect

    ids = [7, 8]
    parquet = snapshot(format_src, tmp_path / "parquet")
    run_scrub(Lake.open(parquet), parse_ids("7,8"), "arrow", workers=1)
    flake = fresh(fmt, converted, format_src, tmp_path / fmt)
    run_format_scrub(flake, erasure_request(ids), fmt, logical_only=True)
    want_con, got_con = connect(parquet), connect(flake.root)
    # a kept customer with skill links, so that every query has rows to compare
    kept = want_con.sql("SELECT min(customer_id) FROM skill_links WHERE customer_id > 8"
                        ).fetchone()[0]
    for q in list_queries():
        names = {p.name for p in q.params}
        params = {k: v for k, v in (("customer_id", str(kept)), ("customer_ids", f"7,{kept}"))
                  if k in names}
        want = run_named(want_con, q.name, params).fetchall()
        got = run_named(got_con, q.name, params).fetchall()
        assert sorted(map(repr, got)) == sorted(map(repr, want)), q.name
        assert want, q.name  # a comparison of something


def test_delta_views_take_partitions_from_the_log_not_the_path(
        format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """A lake under directories named like partitions (`region=zz`, `origin=x`) and with a
    space in its path: the views still read every row with its own region and origin."""
    from queries.named import run_named
    from queries.views import connect

    flake = fresh("delta", converted, format_src, tmp_path / "a b" / "region=zz" / "origin=x" / "d")
    want = run_named(connect(format_src), "region_volume", {}).fetchall()
    got = run_named(connect(flake.root), "region_volume", {}).fetchall()
    assert sorted(got) == sorted(want) and want


def test_cli_refusals(format_src: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["scrub", "--lake", str(format_src), "--strategy", "delta",
                            "--ids", "1"])
    assert r.exit_code == 2 and "voicescrub convert" in r.output
    r = runner.invoke(app, ["scrub", "--lake", str(format_src), "--strategy", "arrow",
                            "--ids", "1", "--logical-only"])
    assert r.exit_code == 2 and "logical" in r.output
    r = runner.invoke(app, ["purge", "--lake", str(format_src), "--strategy", "delta"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["convert", "--lake", str(format_src), "--to", "hudi",
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "delta" in r.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    r = runner.invoke(app, ["convert", "--lake", str(format_src), "--to", "delta",
                            "--out", str(tmp_path / "busy")])
    assert r.exit_code == 2 and "--force" in r.output
    assert (tmp_path / "busy" / "f").read_text() == "x"


def test_options_a_format_lake_has_no_use_for_are_refused(converted: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """--verify deep, --workers and --lineage were silently ignored on a format lake."""
    lake = converted["ducklake"]
    before = lake_digest(lake)
    spec = tmp_path / "lineage.json"
    spec.write_text(json.dumps({"subject": "customer_id",
                                "tables": {"customers": {"customer_id": "customer_id"}}}))
    for extra in (["--verify", "deep"], ["--workers", "3"], ["--lineage", str(spec)]):
        r = runner.invoke(app, ["scrub", "--lake", str(lake), "--strategy", "ducklake",
                                "--ids", "1", *extra])
        assert r.exit_code == 2 and "not for a ducklake lake" in r.output, (extra, r.output)
    assert lake_digest(lake) == before


@pytest.mark.parametrize(("error", "code", "says"), [
    (OSError(28, "No space left on device"), 1, "no space left on the device of"),
    (EngineError("Generic LocalFileSystem error: No space left on device (os error 28)"), 1,
     "no space left on the device of"),
    (KeyboardInterrupt(), 130, "interrupted: the partial lake was removed"),
    (SystemExit(143), 143, "interrupted: the partial lake was removed"),
])
def test_convert_stopped_midway_leaves_no_partial_lake(
        format_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        error: BaseException, code: int, says: str) -> None:
    """A full disk or Ctrl-C during a conversion: one line, and no partial format lake (a
    lake replaced with --force leaves its directory empty: the same code as generate)."""
    import pipeline.formats.convert as convert_module

    real, calls = convert_module.table_batches, []

    def batches(lake, table, schema):  # noqa: ANN001, ANN202
        calls.append(table)
        if len(calls) == 3:  # two tables written, the third fails
            raise error
        return real(lake, table, schema)

    monkeypatch.setattr(convert_module, "table_batches", batches)
    out = tmp_path / "dl"
    r = runner.invoke(app, ["convert", "--lake", str(format_src), "--to", "ducklake",
                            "--out", str(out)])
    assert r.exit_code == code, r.output
    assert says in " ".join(r.output.split()) and "Traceback" not in r.output
    if code == 1:
        assert "2 of 9 tables done" in " ".join(r.output.split())
    assert not out.exists()


def test_cli_two_steps(format_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    r = runner.invoke(app, ["convert", "--lake", str(format_src), "--to", "ducklake",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "9 tables" in r.output
    r = runner.invoke(app, ["scrub", "--lake", str(out), "--strategy", "delta", "--ids", "3"])
    assert r.exit_code == 2 and "ducklake lake" in r.output
    r = runner.invoke(app, ["scrub", "--lake", str(out), "--strategy", "ducklake", "--ids", "3",
                            "--logical-only"])
    assert r.exit_code == 0, r.output
    assert "voicescrub purge" in r.output
    r = runner.invoke(app, ["audit", "--lake", str(out), "--ids", "3"])
    assert r.exit_code == 1  # logically deleted, physically present
    r = runner.invoke(app, ["purge", "--lake", str(out), "--strategy", "ducklake"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["audit", "--lake", str(out), "--ids", "3"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["strategies"])
    assert all(name in r.output for name in ("arrow", "delta", "iceberg", "ducklake"))


def test_delta_large_key_sets_go_through_merge(format_src: Path, tmp_path: Path,
                                               converted: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Past IN_LIST_MAX keys the DELETE is a MERGE of the key table (an IN list of 10,000s
    of literals is slow in delta-rs, an OR chain crashes it): same rows erased, same checks."""
    import pipeline.formats.delta as delta

    monkeypatch.setattr(delta, "IN_LIST_MAX", 2)
    flake = fresh("delta", converted, format_src, tmp_path / "delta")
    ids = [4, 5, 6]
    keys = resolve_format_keys(flake, get("delta"), np.array(ids, np.int64))
    before = kept_checksums(flake, keys)
    receipt, _ = run_format_scrub(flake, erasure_request(ids), "delta")
    forms = {t: v.get("predicate", "") for t, v in receipt["logical"]["tables"].items()}
    assert forms["customers"].startswith("MERGE") and forms["actions"].startswith("MERGE")
    assert receipt["physical"]["verification"]["passed"]
    assert kept_checksums(flake, None) == before
    assert run_audit(Lake.open(flake.root), np.array(ids), names=False).clean



def test_iceberg_reads_a_replaced_lake_not_the_catalog_it_opened_before(
        format_src: Path, tmp_path: Path, converted: dict[str, Path]) -> None:
    """A process keeps its Iceberg catalog open between table loads; a lake replaced under it
    (restored from a copy, here after a DELETE) is read anew, not through the open catalog's
    connection to the deleted catalog file."""
    fmt = get("iceberg")
    flake = fresh("iceberg", converted, format_src, tmp_path)
    rows = fmt.row_count(flake, "transcripts")
    catalog = fmt.catalog(flake)
    assert fmt.catalog(flake) is catalog  # one catalog for the job's many loads
    fmt.delete(flake, "transcripts", "customer_id", pa.array([3, 4], pa.int64()))
    assert fmt.row_count(flake, "transcripts") < rows
    flake = fresh("iceberg", converted, format_src, tmp_path)  # the lake as converted
    assert fmt.row_count(flake, "transcripts") == rows
    fmt.release(flake)

# --- a format lake where it is not: copies, relative --out, --force --------------------------
def test_copied_iceberg_lake_is_refused_and_neither_lake_is_touched(
        tmp_path: Path, converted: dict[str, Path]) -> None:
    """Iceberg's metadata names files by absolute path: a copy's scrub or purge would erase
    the original's files and leave its own. Every command refuses it (exit 2), nothing
    changes on either side, and the original still answers queries."""
    from queries.views import connect

    original = converted["iceberg"]  # read-only: nothing may change it (asserted below)
    copy = Path(shutil.copytree(original, tmp_path / "k2_iceberg"))
    before = {original: lake_digest(original), copy: lake_digest(copy)}
    for args in (["scrub", "--strategy", "iceberg", "--ids", "7"],
                 ["scrub", "--strategy", "iceberg", "--ids", "7", "--logical-only"],
                 ["purge", "--strategy", "iceberg"]):
        r = runner.invoke(app, [*args, "--lake", str(copy)])
        assert r.exit_code == 2, (args, r.output)
        assert "moved or copied" in r.output and str(original) in r.output, r.output
    with pytest.raises(LakeError, match="moved or copied"):  # the read paths too
        connect(copy)
    with pytest.raises(LakeError, match="moved or copied"):
        run_audit(Lake.open(copy), np.array([7]), names=False)
    # a lake not opened through FormatLake.open is refused by the table loads themselves
    unchecked = FormatLake(copy, json.loads((copy / "_lake.json").read_text()))
    with pytest.raises(LakeError, match="moved or copied"):
        run_purge(unchecked, "iceberg")
    assert {original: lake_digest(original), copy: lake_digest(copy)} == before
    flake = FormatLake.open(original)
    assert get("iceberg").row_count(flake, "actions") == flake.table("actions")["rows_stored"]


def test_iceberg_converted_to_a_relative_out_works_from_anywhere(
        format_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["convert", "--lake", str(format_src), "--to", "iceberg",
                            "--out", "rel_iceberg"])
    assert r.exit_code == 0, r.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    flake = FormatLake.open(tmp_path / "rel_iceberg")
    for table in flake.tables():  # read from here: every location was stored absolute
        assert get("iceberg").row_count(flake, table) == flake.table(table)["rows_stored"]


def test_convert_force_replaces_only_a_previous_lake(format_src: Path, tmp_path: Path) -> None:
    def convert_cli(src: Path, out: Path):  # noqa: ANN202
        return runner.invoke(app, ["convert", "--lake", str(src), "--to", "delta", "--out",
                                   str(out), "--force"])

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("mine")
    r = convert_cli(format_src, busy)
    assert r.exit_code == 2 and "holds no lake" in r.output, r.output
    assert [p.name for p in busy.iterdir()] == ["precious.txt"]
    # a previous lake that holds the source, and an --out inside the source
    outer = tmp_path / "outer"
    src = snapshot(format_src, outer / "src")
    (outer / "_lake.json").write_text("{}")
    digest = lake_digest(outer)
    for out in (outer, src / "new"):
        r = convert_cli(src, out)
        assert r.exit_code == 2 and "inside one another" in r.output, r.output
    assert lake_digest(outer) == digest
    previous = tmp_path / "previous"  # a previous lake (and only its own files) is replaced
    previous.mkdir()
    (previous / "_lake.json").write_text("{}")
    r = convert_cli(format_src, previous)
    assert r.exit_code == 0, r.output
    assert json.loads((previous / "_lake.json").read_text())["format"] == "delta"


