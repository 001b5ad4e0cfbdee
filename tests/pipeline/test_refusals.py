"""Bad input is refused with a clear message and exit status 2, before anything is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.lake import Lake, LakeError
from pipeline.scrub import SKIPPED_BY
from tests.pipeline.conftest import lake_digest, snapshot

runner = CliRunner()


def scrub(lake: Path, *args: str):  # noqa: ANN201
    return runner.invoke(app, ["scrub", "--lake", str(lake), *args])


@pytest.mark.parametrize("setup, args, message", [
    (None, ["--customers", "{tmp}/missing.csv"], "does not exist"),
    ("customer_id\n", ["--customers", "{tmp}/r.csv"], "lists no customer ids"),
    ("customer_id\n1\nzz\n", ["--customers", "{tmp}/r.csv"], "is not an integer"),
    ("customer_id\n-1\n", ["--customers", "{tmp}/r.csv"], "is negative"),
    ("id\n1\n", ["--customers", "{tmp}/r.csv"], "has no customer_id column"),
    (None, ["--ids", ""], "--ids is empty"),
    (None, ["--ids", "1,2", "--strategy", "nope"], "unknown strategy 'nope'"),
    (None, [], "exactly one of --customers"),
    (None, ["--ids", "1", "--verify", "sometimes"], "--verify must be"),
    (None, ["--ids", "99999999999999999999"], "is too large"),
    ("customer_id\n99999999999999999999\n", ["--customers", "{tmp}/r.csv"], "is too large"),
    ("customer_id,requested_at\n7,2999-01-01T00:00:00Z\n", ["--customers", "{tmp}/r.csv"],
     "is in the future"),
    (None, ["--customers", "{tmp}"], "is a directory"),
    ("customer_id,requested_at\n7,2020-01-01T00:00:00Z\n8,2999-01-01T00:00:00Z\n",
     ["--customers", "{tmp}/r.csv"], "is in the future"),
    (None, ["--ids", "\u00b2"], "is not an integer"),
    (None, ["--ids", "1", "--workers", "-1"], "--workers must be"),
    (None, ["--ids", "1", "--receipt", "{tmp}/no/such/dir/r.json"], "does not exist"),
    (None, ["--ids", "1", "--receipt", "{tmp}"], "is a directory"),
    # a directory root may "access" but nobody can create a file in
    (None, ["--ids", "1", "--receipt", "/proc/r.json"], "cannot be written"),
])
def test_bad_request(date_src: Path, tmp_path: Path, setup: str | None, args: list[str],
                     message: str) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    if setup is not None:
        (tmp_path / "r.csv").write_text(setup)
    before = lake_digest(lake)
    result = scrub(lake, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert lake_digest(lake) == before


def test_lake_without_manifest_or_lineage(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    (lake / "_lake.json").unlink()
    before = lake_digest(lake)
    result = scrub(lake, "--ids", "1")
    assert result.exit_code == 2
    assert "neither _lake.json nor a --lineage spec" in result.output
    assert lake_digest(lake) == before


@pytest.mark.parametrize("damage, message", [
    ("extra", "not in the manifest"), ("missing", "are missing"), ("resized", "manifest says"),
])
def test_lake_that_does_not_match_its_manifest(date_src: Path, tmp_path: Path, damage: str,
                                               message: str) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    victim = sorted((lake / "recordings").rglob("*.parquet"))[0]
    if damage == "extra":
        pq.write_table(pa.table({"customer_id": [1]}), victim.with_name("stray.parquet"))
    elif damage == "missing":
        victim.unlink()
    else:
        data = victim.read_bytes()
        victim.unlink()  # a hard link: replace, never write through to the source
        victim.write_bytes(data + b"\0")
    before = lake_digest(lake)
    result = scrub(lake, "--ids", "1,2")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert lake_digest(lake) == before


def test_dry_run_prints_the_plan_and_touches_nothing(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake)
    result = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "1,2,3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "rows to erase" in result.output.replace("\n", " ") or "erase" in result.output
    assert "keys resolved" in result.output
    assert lake_digest(lake) == before


def test_dry_run_json_is_the_plan_the_job_then_carries_out(date_src: Path,
                                                           tmp_path: Path) -> None:
    """`--dry-run --json` writes the plan (totals, per table and region, every file to
    rewrite); the job run next rewrites exactly those files and erases those rows."""
    lake = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake)
    plan_file = tmp_path / "plan.json"
    args = ["scrub", "--lake", str(lake), "--ids", "1,2,3,999999"]
    result = runner.invoke(app, [*args, "--dry-run", "--json", str(plan_file)])
    assert result.exit_code == 0, result.output
    assert lake_digest(lake) == before
    plan = json.loads(plan_file.read_text())
    assert plan["dry_run"] and plan["customers_requested"] == 4
    assert plan["customers_not_found"] == 1
    totals = plan["totals"]
    assert {k: sum(r[k] for r in plan["by_table_region"]) for k in totals} == totals
    for row in [totals, *plan["by_table_region"]]:  # every file is scanned or skipped
        assert row["files"] == row["scanned"] + sum(row[f"skipped_by_{m}"] for m in SKIPPED_BY)
    to_rewrite = {f["path"] for f in plan["files_to_rewrite"]}
    assert len(to_rewrite) == totals["to_rewrite"] > 0
    assert sum(f["rows_to_erase"] for f in plan["files_to_rewrite"]) == totals["rows_to_erase"]

    stdout = runner.invoke(app, [*args, "--dry-run", "--json", "-"])
    assert json.loads(stdout.output) == plan  # nothing but the JSON on stdout
    table = runner.invoke(app, [*args, "--dry-run"], env={"COLUMNS": "100"}).output
    all_row = next(line.split() for line in table.splitlines() if line.startswith(" all "))
    assert all_row[1:4] == [f"{totals[k]:,}" for k in ("files", "skipped_by_stats", "scanned")]
    assert f"{totals['rows_to_erase']:,}" in all_row
    # an id no table holds: files whose table has no key to match are skipped as such
    absent = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "999999", "--dry-run",
                                 "--json", "-"])
    none = json.loads(absent.output)["totals"]
    assert none["skipped_by_no_keys"] > 0 and none["to_rewrite"] == 0
    assert none["files"] == none["scanned"] + sum(none[f"skipped_by_{m}"] for m in SKIPPED_BY)
    refused = runner.invoke(app, [*args, "--json", str(plan_file)])
    assert refused.exit_code == 2 and "add --dry-run" in refused.output
    assert lake_digest(lake) == before

    done = runner.invoke(app, [*args, "--receipt", str(tmp_path / "r.json")])
    assert done.exit_code == 0, done.output
    receipt = json.loads((tmp_path / "r.json").read_text())
    assert receipt["totals"]["files_rewritten"] == totals["to_rewrite"]
    assert receipt["totals"]["rows_erased"] == totals["rows_to_erase"]
    changed = {p for p, d in lake_digest(lake).items() if before.get(p) != d}
    assert {p for p in changed if p.endswith(".parquet")} == to_rewrite


def test_generic_lake_with_a_lineage_spec(tmp_path: Path) -> None:
    """Any Hive-partitioned Parquet lake can be scrubbed once its owner writes a lineage."""
    lake = tmp_path / "shop"
    (lake / "users" / "region=eu").mkdir(parents=True)
    (lake / "orders" / "region=eu").mkdir(parents=True)
    (lake / "order_lines" / "region=eu").mkdir(parents=True)
    pq.write_table(pa.table({"customer_id": [1, 2, 3], "email": ["a@x.io", "b@x.io", "c@x.io"]}),
                   lake / "users" / "region=eu" / "part-0.parquet")
    pq.write_table(pa.table({"order_id": [10, 11, 12, 13], "customer_id": [1, 2, 2, 3]}),
                   lake / "orders" / "region=eu" / "part-0.parquet")
    pq.write_table(pa.table({"order_id": [10, 11, 12, 12, 13], "sku": list("abcde")}),
                   lake / "order_lines" / "region=eu" / "part-0.parquet")
    spec = {"subject": "customer_id",
            "keys": {"order_id": {"table": "orders", "column": "order_id", "via": "customer_id"}},
            "tables": {"users": {"customer_id": "customer_id"},
                       "orders": {"customer_id": "customer_id"},
                       "order_lines": {"order_id": "order_id"}}}
    (tmp_path / "lineage.json").write_text(json.dumps(spec))
    result = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "2",
                                 "--lineage", str(tmp_path / "lineage.json")])
    assert result.exit_code == 0, result.output
    lines = pq.read_table(lake / "order_lines" / "region=eu" / "part-0.parquet")
    assert lines["sku"].to_pylist() == ["a", "e"]
    assert pq.read_table(lake / "orders")["customer_id"].to_pylist() == [1, 3]


def test_lineage_errors(tmp_path: Path) -> None:
    (tmp_path / "l.json").write_text(json.dumps({"subject": "customer_id",
                                                 "tables": {"t": {"x": "order_id"}}}))
    (tmp_path / "lake").mkdir()
    with pytest.raises(LakeError, match="unknown key 'order_id'"):
        Lake.open(tmp_path / "lake", tmp_path / "l.json")


def test_unknown_strategy_lists_the_table_formats_too(date_src: Path, tmp_path: Path) -> None:
    result = scrub(snapshot(date_src, tmp_path / "lake"), "--ids", "1", "--strategy", "nope")
    assert result.exit_code == 2
    assert "arrow" in result.output and "delta" in result.output


@pytest.mark.parametrize("args, message", [
    (["--json", "{tmp}/no/such/dir/a.json"], "does not exist"),
    (["--limit", "-1"], "--limit must be"),
    (["--workers", "-2"], "--workers must be"),
])
def test_bad_audit_arguments_are_refused_before_reading(date_src: Path, tmp_path: Path,
                                                        args: list[str], message: str) -> None:
    result = runner.invoke(app, ["audit", "--lake", str(date_src), "--ids", "7",
                                 *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "read " not in result.output  # refused before the audit ran


def test_a_lineage_lakes_rewrite_keeps_page_checksums_and_bloom_filters(tmp_path: Path) -> None:
    """Without a manifest, the writer settings are read off each file: the footer for codecs
    and dictionaries and bloom filters, the first page header for CRCs."""
    lake = tmp_path / "shop"
    (lake / "orders" / "region=eu").mkdir(parents=True)
    path = lake / "orders" / "region=eu" / "part-0.parquet"
    n = 5000
    pq.write_table(pa.table({"customer_id": [i % 50 for i in range(n)],
                             "note": [f"note {i}" for i in range(n)]}), path,
                   write_page_checksum=True, use_dictionary=False,
                   bloom_filter_options={"customer_id": {"ndv": 50, "fpp": 0.01}})
    before = pq.ParquetFile(path).metadata.row_group(0).column(0)
    spec = {"subject": "customer_id", "tables": {"orders": {"customer_id": "customer_id"}}}
    (tmp_path / "lineage.json").write_text(json.dumps(spec))
    result = runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "7",
                                 "--lineage", str(tmp_path / "lineage.json")])
    assert result.exit_code == 0, result.output
    after = pq.ParquetFile(path).metadata
    assert after.num_rows == n - n // 50
    cc = after.row_group(0).column(0)
    assert cc.bloom_filter_offset and cc.bloom_filter_length == before.bloom_filter_length
    # a flipped byte inside the note column's data page is caught by its CRC
    note = after.row_group(0).column(1)
    data = bytearray(path.read_bytes())
    data[note.data_page_offset + note.total_compressed_size - 10] ^= 0xFF
    path.write_bytes(bytes(data))
    pq.read_table(path, columns=["customer_id"], page_checksum_verification=True)
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(path, columns=["note"], page_checksum_verification=True)


def test_an_empty_plan_still_has_every_total() -> None:
    """A lake without files: the dry run's totals are zeros, not missing."""
    import numpy as np

    from pipeline.scrub import PLAN_COUNTS, ScrubPlan

    summary = ScrubPlan({}, [], np.array([], np.int64)).summary(np.array([1]))
    assert summary["totals"] == dict.fromkeys(PLAN_COUNTS, 0)
    assert summary["customers_not_found"] == 1 and summary["files_to_rewrite"] == []


def test_output_paths_inside_the_lake_are_refused_before_anything(date_src: Path,
                                                                  tmp_path: Path) -> None:
    """A plan, receipt or report written into the lake would replace _lake.json or a data file
    (a "dry run" that wrote over the manifest broke every later command)."""
    lake = snapshot(date_src, tmp_path / "lake")
    before = lake_digest(lake)
    data = next((lake / "customers").rglob("*.parquet"))
    for args in (["scrub", "--ids", "1", "--dry-run", "--json", str(lake / "_lake.json")],
                 ["scrub", "--ids", "1", "--receipt", str(data)],
                 ["scrub", "--ids", "1", "--receipt", str(lake / "receipt.json")],
                 ["audit", "--ids", "1", "--json", str(lake / "_lake.json")]):
        r = runner.invoke(app, [*args, "--lake", str(lake)])
        assert r.exit_code == 2 and "is inside the lake" in r.output, (args, r.output)
    r = scrub(lake, "--ids", "1", "--dry-run", "--receipt", str(tmp_path / "r.json"))
    assert r.exit_code == 2 and "a dry run has no receipt" in r.output
    assert lake_digest(lake) == before


@pytest.mark.parametrize("manifest", ["[]", '{"job_id": "x", "tables": {"customers": {}}}'])
def test_a_manifest_of_the_wrong_shape_is_named_not_a_traceback(date_src: Path, tmp_path: Path,
                                                                manifest: str) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    (lake / "_lake.json").unlink()  # a hard link to the shared source's: a file of its own
    (lake / "_lake.json").write_text(manifest)
    for cmd in ("scrub", "audit"):
        r = runner.invoke(app, [cmd, "--lake", str(lake), "--ids", "1"])
        assert r.exit_code == 2 and "is not a voicescrub manifest" in r.output, r.output
