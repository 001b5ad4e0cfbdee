"""The audit finds every kind of trace, visible or hidden, and nothing of other customers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.audit import (
    Needles,
    audit_parquet,
    audit_table_file,
    column_needles,
    run_audit,
)
from pipeline.cli import app
from pipeline.lake import Lake
from tests.pipeline.conftest import snapshot


def speakers_of_pii(lake: Path) -> list[int]:
    t = pl.read_parquet(lake / "transcripts" / "**" / "*.parquet", hive_partitioning=True)
    said = t.filter(pl.col("text").str.contains("my (email|phone number) is"))
    return said["customer_id"].unique().sort().to_list()[:3]


def test_finds_keys_and_spoken_pii_before_a_scrub(date_src: Path) -> None:
    ids = speakers_of_pii(date_src)
    assert ids
    report = run_audit(Lake.open(date_src), np.array(ids))
    kinds = {f.kind for f in report.residue}
    assert {"customer_id", "recording_id", "device_id", "email", "phone"} <= kinds
    tables = {f.path.split("/")[0] for f in report.residue}
    assert {"customers", "recordings", "audio", "transcripts", "actions", "usage_daily",
            "devices"} <= tables
    assert report.visible_rows > 0 and report.hidden_rows == 0
    replica = [f for f in report.residue if "/origin=" in f.path and
               f.path.split("/")[1] != "region=" + f.path.split("origin=")[1].split("/")[0]]
    assert replica, "replica copies are audited too"


def test_hidden_copies_are_physical_residue(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    ids = speakers_of_pii(lake)
    customers = next(p for p in sorted((lake / "customers").rglob("*.parquet"))
                     if pl.read_parquet(p)["customer_id"].is_in(ids).any())
    backup = lake / "backup" / "customers-old.parquet"  # an old version nobody references
    backup.parent.mkdir()
    shutil.copyfile(customers, backup)
    (lake / "export.jsonl").write_text(json.dumps({"customer_id": ids[0], "note": "x"}) + "\n")
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    run_scrub(Lake.open(lake), request(ids), "arrow")
    report = run_audit(Lake.open(lake), np.array(ids))
    assert report.visible_rows == 0
    assert report.hidden_rows > 0
    paths = {f.path for f in report.residue}
    assert "export.jsonl" in paths
    backup_kinds = {f.kind for f in report.residue if f.path.startswith("backup/")}
    assert {"customer_id", "email", "phone"} <= backup_kinds


def test_other_customers_are_not_reported(date_src: Path, tmp_path: Path) -> None:
    lake = snapshot(date_src, tmp_path / "lake")
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    run_scrub(Lake.open(lake), request([1, 2]), "arrow")
    report = run_audit(Lake.open(lake), np.array([1, 2]))
    assert report.clean
    assert run_audit(Lake.open(lake), np.array([3])).residue  # 3 was not erased


def test_cli_exit_status(date_src: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["audit", "--lake", str(date_src), "--ids", "1",
                                 "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 1, result.output
    assert "RESIDUE FOUND" in result.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["logically_visible_rows"] > 0 and not report["clean"]
    lake = snapshot(date_src, tmp_path / "lake")
    assert runner.invoke(app, ["scrub", "--lake", str(lake), "--ids", "1"]).exit_code == 0
    result = runner.invoke(app, ["audit", "--lake", str(lake), "--ids", "1"])
    assert result.exit_code == 0, result.output
    assert "clean" in result.output


def audit_json(lake: Path, ids: list[int], out: Path) -> tuple[int, list[dict]]:
    """The CLI's exit status and findings, as a user sees them."""
    result = CliRunner().invoke(app, ["audit", "--lake", str(lake), "--ids",
                                      ",".join(map(str, ids)), "--json", str(out)])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(out.read_text())["findings"]


def export_history(lake: Path, customer: int, csv: Path) -> bytes:
    """A customer's transcripts exported as CSV with the query command, as a user would."""
    result = CliRunner().invoke(app, [
        "query", "--lake", str(lake), "--format", "csv", "-o", str(csv),
        "--sql", f"select recording_id, text from transcripts where customer_id = {customer}"])
    assert result.exit_code == 0, result.output
    return csv.read_bytes()


def test_names_that_say_customer() -> None:
    from pipeline.audit import named_for

    for name in ("customer_id", "CustomerID", "cust", "src_customer_id", "customer_ids",
                 "payload.cust_id"):
        assert named_for(name, "customer_id"), name
    for name in ("customers", "n_customers", "customer_count", "k", "hours", "custom"):
        assert not named_for(name, "customer_id"), name


def test_unfinished_jobs_journal_is_residue(date_src: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A job killed after its rewrites leaves a clean lake but a journal of raw keys (a column
    named `k`, the plan's present ids): certain traces, hidden from queries."""
    import pipeline.scrub as scrub
    from tests.pipeline.test_scrub import request

    lake = snapshot(date_src, tmp_path / "lake")
    ids = speakers_of_pii(lake)

    class Killed(BaseException):  # as good as SIGKILL here: nothing after the point runs
        pass

    def killed(name: str) -> None:
        if name == "planned":  # every file rewritten, the journal not yet dropped
            raise Killed

    monkeypatch.setattr(scrub, "crashpoint", killed)
    with pytest.raises(Killed):
        scrub.run_scrub(Lake.open(lake), request(ids), "arrow")
    monkeypatch.undo()
    (job,) = [p for p in (lake / "_scrub").iterdir() if p.is_dir()]
    status, findings = audit_json(lake, ids, tmp_path / "a.json")
    assert status == 1
    journal = {(f["path"], f["column"], f["kind"]) for f in findings}
    rel = f"_scrub/{job.name}"
    assert {(f"{rel}/keys-recording_id.parquet", "k", "recording_id"),
            (f"{rel}/keys-customer_id.parquet", "k", "customer_id"),
            (f"{rel}/keys-skill_user_id.parquet", "k", "skill_user_id"),
            (f"{rel}/plan.json", "present_id_values", "customer_id")} <= journal
    residue = [f for f in findings if not f["possible"]]
    assert {f["path"].split("/")[0] for f in residue} == {"_scrub"}  # the data is clean
    assert not any(f["visible"] for f in residue)
    # the job finished (same command again): no journal left, nothing flagged in the receipt
    scrub.run_scrub(Lake.open(lake), request(ids), "arrow")
    status, findings = audit_json(lake, ids, tmp_path / "b.json")
    assert status == 0 and not [f for f in findings if not f["possible"]]


def test_exports_are_searched_whatever_their_columns_are_named(date_src: Path,
                                                               tmp_path: Path) -> None:
    """Distinctive keys (recording, device ids) match in any column; a customer id only in a
    column named for customers, so that counts equal to it are no residue."""
    lake = snapshot(date_src, tmp_path / "lake")
    erased, other = speakers_of_pii(lake)[:2]
    (lake / "exports").mkdir()
    runner = CliRunner()
    for name, sql in {
        "flat": f"select recording_id as rid, customer_id as cust, device_id as d, local_hour, "
                f"text from recordings join transcripts using (recording_id, customer_id) "
                f"where customer_id = {erased}",
        # customer ids in unnamed columns (other customer's id as a count): not residue
        "nested": f"select {erased} as n, {other} as hits, list(recording_id) as recs "
                  f"from transcripts where customer_id = {erased}",
    }.items():
        out = lake / "exports" / f"{name}.parquet"
        result = runner.invoke(app, ["query", "--lake", str(lake), "--sql", sql, "-o", str(out)])
        assert result.exit_code == 0, result.output
    status, findings = audit_json(lake, [erased], tmp_path / "a.json")
    assert status == 1
    found = {(f["path"], f["column"], f["kind"], f["visible"]) for f in findings
             if f["path"].startswith("exports/")}
    assert {("exports/flat.parquet", "rid", "recording_id", False),
            ("exports/flat.parquet", "cust", "customer_id", False),
            ("exports/flat.parquet", "d", "device_id", False),
            ("exports/nested.parquet", "recs", "recording_id", False)} <= found
    assert not {c for p, c, _, _ in found if p == "exports/nested.parquet"} & {"n", "hits"}
    # the other customer is in no export: the count equal to its id is not flagged
    _, findings = audit_json(lake, [other], tmp_path / "b.json")
    assert not [f for f in findings if f["path"].startswith("exports/")]


def test_a_file_the_views_read_is_visible(date_src: Path, tmp_path: Path) -> None:
    """Visible means a query returns it: stray copies in a table's directory (a dot file too:
    DuckDB's glob takes those) are read by the views, the manifest notwithstanding; a copy
    elsewhere is hidden."""
    import duckdb

    from pipeline.scrub import run_scrub
    from queries.views import connect, file_pattern
    from tests.pipeline.test_scrub import request

    lake = snapshot(date_src, tmp_path / "lake")
    ids = speakers_of_pii(lake)
    run_scrub(Lake.open(lake), request(ids), "arrow")
    old = next(p for p in sorted((date_src / "customers").rglob("*.parquet"))
               if pl.read_parquet(p)["customer_id"].is_in(ids).any())
    copies = [lake / old.relative_to(date_src).with_name(n)
              for n in ("part-00099.parquet", ".part-00098.parquet")]
    (lake / "backup").mkdir()
    for p in [*copies, lake / "backup" / old.name]:
        shutil.copyfile(old, p)
    in_list = ",".join(map(str, ids))
    assert connect(lake).execute(
        f"select count(*) from customers where customer_id in ({in_list})").fetchone()[0] > 0
    read = {Path(f).relative_to(lake.resolve()).as_posix() for (f,) in duckdb.sql(
        f"select distinct filename from read_parquet('{lake.resolve()}/"
        f"{file_pattern('customers', 'dimension', 'date')}', filename = true) "
        f"where customer_id in ({in_list})").fetchall()}
    assert read == {c.relative_to(lake).as_posix() for c in copies}  # what the views read
    status, findings = audit_json(lake, ids, tmp_path / "a.json")
    assert status == 1
    visible = {f["path"]: f["visible"] for f in findings if f["kind"] == "customer_id"}
    assert visible == {**dict.fromkeys(read, True), f"backup/{old.name}": False}


@pytest.mark.parametrize("codec", ["gzip", "bz2", "xz", "zstd"])
def test_a_compressed_export_is_read_inside(date_src: Path, tmp_path: Path, codec: str) -> None:
    """An export compressed as a whole hides every needle from a byte search: the audit reads
    it decompressed (by its magic bytes, whatever its name)."""
    import bz2
    import gzip
    import lzma

    import pyarrow as pa

    lake = snapshot(date_src, tmp_path / "lake")
    erased = speakers_of_pii(lake)[0]
    data = export_history(lake, erased, tmp_path / "x.csv")
    out = lake / "exports" / "history.bin"
    out.parent.mkdir()
    if codec == "zstd":
        with pa.CompressedOutputStream(str(out), "zstd") as fh:
            fh.write(data)
    else:
        out.write_bytes({"gzip": gzip.compress, "bz2": bz2.compress,
                         "xz": lzma.compress}[codec](data))
    assert b"," not in out.read_bytes()[:4]  # compressed: no plain text to find
    status, findings = audit_json(lake, [erased], tmp_path / "a.json")
    assert status == 1
    assert ("exports/history.bin", f"({codec})", "recording_id") in {
        (f["path"], f["column"], f["kind"]) for f in findings}


def test_street_addresses_are_possible_mentions_not_residue(date_src: Path,
                                                            tmp_path: Path) -> None:
    """A street address is PII but not unique to a customer: found in free text, it is listed
    apart, like a name, and the audit still passes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from generators.truth import config_from_manifest, identifiers
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    lake = snapshot(date_src, tmp_path / "lake")
    erased = speakers_of_pii(lake)[0]
    run_scrub(Lake.open(lake), request([erased]), "arrow", workers=2)
    manifest = json.loads((lake / "_lake.json").read_text())
    address = identifiers(config_from_manifest(manifest), np.array([erased])).street_address[0]
    (lake / "notes").mkdir()
    pq.write_table(pa.table({"note": [f"ship it to {address} please", "nothing here"]}),
                   lake / "notes" / "n.parquet")
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert report.clean
    assert report.to_json()["possible_address_mentions"] >= 1
    assert ("notes/n.parquet", "note", "address") in {
        (f.path, f.column, f.kind) for f in report.findings if f.possible}


def test_ids_exported_as_other_types_lists_and_structs_are_found(date_src: Path,
                                                                 tmp_path: Path) -> None:
    """What exports do to an id: pandas makes a nullable one float64, Spark a decimal, a
    request log lists several, a nested record names it `customer.id`."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = snapshot(date_src, tmp_path / "lake")
    a, b = speakers_of_pii(lake)[:2]
    ex = lake / "exports"
    ex.mkdir()
    pq.write_table(pa.table({"customer_id": pa.array([float(a), None, 0.5])}), ex / "f.parquet")
    pq.write_table(pa.table({"customer_id": pa.array([b], pa.decimal128(20, 0))}),
                   ex / "d.parquet")
    pq.write_table(pa.table({"customer": pa.array([{"id": a}])}), ex / "s.parquet")
    (ex / "req.json").write_text(f'{{"customer_ids": [1, {a}, {b}]}}')
    damaged = gzip.compress(b"x" * 9999)
    (ex / "broken.gz").write_bytes(damaged[:20] + b"\xff" * 50 + damaged[70:])
    (ex / "broken.xz").write_bytes(b"\xfd7zXZ\x00\x00\x04garbage")
    status, findings = audit_json(lake, [a, b], tmp_path / "a.json")
    assert status == 1
    found = {(f["path"], f["column"]) for f in findings if f["path"].startswith("exports/")}
    assert {("exports/f.parquet", "customer_id"), ("exports/d.parquet", "customer_id"),
            ("exports/s.parquet", "customer.id"), ("exports/req.json", "(bytes)")} <= found
    req = next(f for f in findings if f["path"] == "exports/req.json")
    assert req["rows"] == 2  # both ids of the list, not only the first


def test_an_id_the_lake_never_held_is_said_to_be_so(date_src: Path, tmp_path: Path) -> None:
    """'clean' for an id no customer ever had says nothing about a real customer: the report
    tells them apart."""
    n = json.loads((date_src / "_lake.json").read_text())["config"]["n_customers"]
    result = CliRunner().invoke(app, ["audit", "--lake", str(date_src), "--ids",
                                      f"{n + 1},0", "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    assert "(2 never in this lake)" in result.output
    assert json.loads((tmp_path / "a.json").read_text())["ids_never_in_lake"] == 2


def _scrubbed_with_exports(date_src: Path, tmp_path: Path) -> tuple[Path, int, bytes, Path]:
    """A lake after erasing one customer, with their history exported as CSV and as Parquet
    (taken before the scrub) to pack into archives."""
    from pipeline.scrub import run_scrub
    from tests.pipeline.test_scrub import request

    lake = snapshot(date_src, tmp_path / "lake")
    erased = speakers_of_pii(lake)[0]
    csv = export_history(lake, erased, tmp_path / "history.csv")
    pq_export = tmp_path / "customer.parquet"
    pl.read_parquet(lake / "customers" / "**" / "*.parquet").filter(
        pl.col("customer_id") == erased).write_parquet(pq_export)
    run_scrub(Lake.open(lake), request([erased]), "arrow", workers=2)
    return lake, erased, csv, pq_export


def test_archives_are_read_member_by_member(date_src: Path, tmp_path: Path) -> None:
    """A zip's members are compressed: a byte search sees none of the exports inside. The
    audit opens zips and tars (plain or compressed as a whole), reads each member, a Parquet
    member through its columns and an archive member in turn, and names the member."""
    import io
    import tarfile
    import zipfile

    lake, erased, csv, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    assert run_audit(Lake.open(lake), np.array([erased])).clean
    ex = lake / "exports"
    ex.mkdir()
    with zipfile.ZipFile(ex / "backup.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("history.csv", csv)
        zf.write(pq_export, "dump/customer.parquet")
        zf.writestr("empty/", b"")
    assert b"recording_id" not in (ex / "backup.zip").read_bytes()  # deflated
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("h.csv", csv)
    with tarfile.open(ex / "old.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("nested/inner.zip")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    status, findings = audit_json(lake, [erased], tmp_path / "a.json")
    assert status == 1
    found = {(f["path"], f["column"], f["kind"]) for f in findings}
    assert ("exports/backup.zip", "(zip) history.csv: (bytes)", "recording_id") in found
    assert ("exports/backup.zip", "(zip) dump/customer.parquet: customer_id",
            "customer_id") in found
    assert ("exports/backup.zip", "(zip) dump/customer.parquet: email", "email") in found
    assert ("exports/old.tar.gz", "(gzip) (tar) nested/inner.zip (zip) h.csv: (bytes)",
            "recording_id") in found
    assert all(not f["visible"] for f in findings)


def test_a_tar_is_read_by_member_and_by_member_name(date_src: Path, tmp_path: Path) -> None:
    import io
    import tarfile

    lake, erased, csv, _ = _scrubbed_with_exports(date_src, tmp_path)
    from generators.truth import config_from_manifest, identifiers

    manifest = json.loads((lake / "_lake.json").read_text())
    email = identifiers(config_from_manifest(manifest), np.array([erased])).email[0]
    with tarfile.open(lake / "exports.tar", "w") as tf:
        for name, data in ((f"by-customer/{email}.txt", b"nothing telling"),
                           ("history.csv", csv)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    status, findings = audit_json(lake, [erased], tmp_path / "a.json")
    assert status == 1
    found = {(f["column"], f["kind"]) for f in findings if f["path"] == "exports.tar"}
    assert ("(tar) history.csv: (bytes)", "recording_id") in found
    assert ("(tar) (member names)", "email") in found


def _zip_with_unreadable_first_member(csv: bytes) -> bytes:
    """A zip whose first member uses a compression method Python cannot read (deflate64),
    then a readable CSV."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("first.bin", b"x" * 1000)
        zf.writestr("history.csv", csv)
    data = bytearray(buf.getvalue())
    data[8:10] = (9).to_bytes(2, "little")  # the local header's method
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry
    data[entry + 10:entry + 12] = (9).to_bytes(2, "little")
    return bytes(data)


def test_damaged_archives_and_files_keep_what_could_be_read(date_src: Path,
                                                             tmp_path: Path) -> None:
    """One bad member does not hide the others, a cut stream keeps what came before the cut,
    and what could not be read is listed: the audit then cannot say "clean" (exit 1)."""
    import gzip
    import re
    import zipfile

    lake, erased, csv, pq_export = _scrubbed_with_exports(date_src, tmp_path)
    ex = lake / "exports"
    ex.mkdir()
    (ex / "odd.zip").write_bytes(_zip_with_unreadable_first_member(csv))
    big = csv + b"filler\n" * 6_000_000  # > 32 MB decompressed: cut after the first chunk
    packed = gzip.compress(big, compresslevel=1)
    (ex / "cut.csv.gz").write_bytes(packed[: int(len(packed) * 0.9)])
    (ex / "sfx.zip").write_bytes(b"#!/bin/sh\nexit 0\n" * 64 + (ex / "odd.zip").read_bytes())
    (ex / "customer.parquet.gz").write_bytes(gzip.compress(pq_export.read_bytes()))
    (ex / "broken.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    small = gzip.compress(csv)  # under a MiB: cut, what came before the cut still counts
    (ex / "small-cut.csv.gz").write_bytes(small[: int(len(small) * 0.95)])
    with zipfile.ZipFile(ex / "pk.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ids.csv", b"PK," + csv)  # a key column named PK: no zip inside
    whole = (ex / "pk.zip").read_bytes()
    (ex / "no-directory.zip").write_bytes(whole[: whole.index(b"PK\x01\x02")])
    (ex / "not-a.tar").write_bytes(b"n" * 257 + b"ustar" + b" text, no tar" * 40)
    report = run_audit(Lake.open(lake), np.array([erased]))
    found = {(f.path, f.column) for f in report.residue}
    assert {("exports/odd.zip", "(zip) history.csv: (bytes)"),
            ("exports/cut.csv.gz", "(gzip)"),
            ("exports/sfx.zip", "(zip) history.csv: (bytes)"),
            ("exports/customer.parquet.gz", "(gzip): customer_id"),
            ("exports/pk.zip", "(zip) ids.csv: (bytes)")} <= found
    ids_in_csv = len(re.findall(rb"\n(\d{10,})", csv))
    cut_found = sum(f.rows for f in report.residue
                    if f.path == "exports/small-cut.csv.gz" and f.kind == "recording_id")
    assert cut_found >= ids_in_csv // 2
    unreadable = "\n".join(report.unreadable)
    assert "exports/odd.zip (zip) first.bin" in unreadable
    assert "exports/cut.csv.gz" in unreadable and "exports/broken.parquet" in unreadable
    assert "exports/no-directory.zip: starts as a zip" in unreadable
    assert "not-a.tar" not in unreadable

    # nothing but unreadable things: not residue, yet not proven clean either
    for p in ex.iterdir():
        if p.name != "broken.parquet":
            p.unlink()
    result = CliRunner().invoke(app, ["audit", "--lake", str(lake), "--ids", str(erased)])
    assert result.exit_code == 1, result.output
    assert "NOT PROVEN CLEAN" in result.output and "broken.parquet" in result.output
    assert "RESIDUE" not in result.output


def test_names_in_plain_files_are_possible_mentions(date_src: Path, tmp_path: Path) -> None:
    """A support ticket that names the customer: listed apart (a name is not unique), the
    audit still passes."""
    from generators.truth import config_from_manifest, identifiers

    lake, erased, _, _ = _scrubbed_with_exports(date_src, tmp_path)
    manifest = json.loads((lake / "_lake.json").read_text())
    who = identifiers(config_from_manifest(manifest), np.array([erased]))
    (lake / "tickets.txt").write_text(
        f"caller {who.full_name[0]} asked about the bill; ship to {who.street_address[0]}\n")
    report = run_audit(Lake.open(lake), np.array([erased]))
    assert report.clean
    possible = {(f.path, f.column, f.kind) for f in report.findings if f.possible}
    assert {("tickets.txt", "(bytes)", "name"), ("tickets.txt", "(bytes)", "address")} <= possible
    assert run_audit(Lake.open(lake), np.array([erased]), names=False).findings == []
    quiet = CliRunner().invoke(app, ["audit", "--lake", str(lake), "--ids", str(erased),
                                     "--no-names"])
    assert quiet.exit_code == 0 and "names and street addresses not searched" in quiet.output


def test_names_in_a_delta_checkpoints_strings_are_possible_mentions(tmp_path: Path) -> None:
    """The string leaves of nested Parquet columns (a Delta checkpoint's stats) are searched
    like raw bytes: a name there is a possible mention, not residue."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.audit import RawNeedles, _alternation
    from pipeline.audit_formats import nested_string_findings

    path = tmp_path / "checkpoint.parquet"
    stats = '{"min": {"full_name": "Ada Lovelace"}}'
    pq.write_table(pa.table({"add": pa.array([{"stats": stats}])}), path)
    raw = RawNeedles({}, set(), {"skill_user_id": set(), "email": set(), "phone": set()},
                     {"name": _alternation(["Ada Lovelace"])})
    found = nested_string_findings(path, "t/_delta_log/c.parquet", raw)
    assert [(f.kind, f.possible) for f in found] == [("name", True)]


def test_many_names_are_searched_in_batches() -> None:
    """RE2 slows to a crawl past ~1,000 alternatives: names go in batches, and a name in any
    batch is found, in raw bytes and in text columns alike."""
    import pyarrow as pa

    from pipeline.audit import ALTERNATION_BATCH, RawNeedles, _alternation, _text_masks, raw_counts

    names = [f"Person Number{i:05d}" for i in range(3 * ALTERNATION_BATCH)]
    batches = _alternation(names)
    assert len(batches) == 3
    raw = RawNeedles({}, set(), {"skill_user_id": set(), "email": set(), "phone": set()},
                     {"name": batches})
    text = b"call Person Number00007 and Person Number01111 today"
    assert raw_counts(text, raw) == {"name": 2}
    col = pa.array(["hi Person Number01111", "nobody", None])
    mask = _text_masks(col, {"sets": {}, "name": batches, "address": []})["name"]
    assert mask.tolist() == [True, False, False]


def test_nesting_past_the_depth_limit_is_listed(tmp_path: Path) -> None:
    import io
    import zipfile

    from pipeline.audit import ARCHIVE_DEPTH, RawNeedles, audit_raw

    data = b"recording_id\n1234567890123\n"
    name = "h.csv"
    for level in range(ARCHIVE_DEPTH + 1):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        data, name = buf.getvalue(), f"l{level}.zip"
    (tmp_path / "deep.zip").write_bytes(data)
    raw = RawNeedles({"recording_id": {1234567890123}}, set(),
                     {"skill_user_id": set(), "email": set(), "phone": set()})
    unreadable: list[str] = []
    audit_raw(tmp_path / "deep.zip", "deep.zip", raw, None, unreadable)
    assert len(unreadable) == 1 and f"more than {ARCHIVE_DEPTH} levels" in unreadable[0]


def test_long_runs_of_word_characters_are_scanned_in_linear_time() -> None:
    """The email pattern was tried from every position of a run with no "@" and read the run to
    its end each time: a 40 kB run took 3 s, a 32 MB chunk of zeros never finished. Run in a
    child process with a deadline, so the old behaviour fails instead of hanging the suite."""
    import subprocess
    import sys

    code = (
        "from pipeline.audit import RawNeedles, raw_counts\n"
        "raw = RawNeedles({}, set(), {'skill_user_id': set(), 'email': {'jane@example.com'},"
        " 'phone': set()})\n"
        "data = b'f' * 8_000_000 + b' Jane@Example.com ' + b'0' * 8_000_000\n"
        "print(raw_counts(data, raw))\n")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "{'email': 1}", done.stderr


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"Z", b"0", b"7", b"1234567890", b"-", b".", b"+",
                                 b"@", b"_", b" ", b":", b"\n", b"\xff", b"x.y", b"@ex.com"]),
                max_size=60).map(b"".join))
def test_long_ids_and_emails_are_found_as_the_patterns_find_them(data: bytes) -> None:
    """long_ids and email_tokens find exactly what the regexes TOKENS["long_id"] and
    TOKENS["email"] find, only faster (from digit runs, from each "@")."""
    import re

    from pipeline.audit import TOKENS, email_tokens, long_ids

    assert long_ids(data) == [int(m) for m in TOKENS["long_id"].findall(data)]
    assert email_tokens(data) == TOKENS["email"].findall(data)
    assert TOKENS["token"].findall(data) == re.findall(rb"[\w.:-]{12,}", data)


def test_a_dictionary_entry_no_row_uses_is_physical_residue(date_src: Path,
                                                           tmp_path: Path) -> None:
    """Arrow's filter keeps a dictionary whole: a file written from filtered rows can hold an
    email in its dictionary page that no row uses. No query returns it; the audit finds it."""
    lake = snapshot(date_src, tmp_path / "lake")
    customers = pl.read_parquet(lake / "customers" / "**" / "*.parquet")
    erased, other = customers.row(0, named=True), customers.row(1, named=True)
    emails = pa.array([erased["email"], other["email"]]).dictionary_encode()
    kept = emails.filter(pa.array([False, True]))  # the dictionary still holds both
    assert len(kept.dictionary) == 2
    pq.write_table(pa.table({"contact": kept}), lake / "contacts.parquet")
    report = run_audit(Lake.open(lake), np.array([erased["customer_id"]]))
    hit = [f for f in report.residue if f.path == "contacts.parquet"]
    assert [(f.column, f.kind, f.rows, f.visible) for f in hit] == [
        ("contact (dictionary entries no row uses)", "email", 1, False)]


def test_a_table_files_text_inside_lists_structs_and_maps_is_searched(tmp_path: Path) -> None:
    """A table file's nested columns: their text leaves' values, rows counted, and their
    dictionaries' unused entries (a list's or struct's dictionary is written whole too).
    Before, a table file was read through its top-level columns only."""
    needles = Needles(keys={}, emails=["secret@y.io"], phones=["+1 555 0100"], names=[])
    kept = pa.array(["a@x.io", "secret@y.io"]).dictionary_encode().filter(
        pa.array([True, False]))  # its dictionary still holds the erased email
    pq.write_table(pa.table({
        "cc": pa.array([["a@x.io", "secret@y.io", "secret@y.io"], []]),  # a value, twice
        "contact": pa.StructArray.from_arrays([kept.take(pa.array([0, 0]))], names=["email"]),
        "tags": pa.array([[("phone", "+1 555 0100")], None],
                         pa.map_(pa.string(), pa.string())),
        "seen": pa.array([[], ["secret@y.io"]], pa.list_(pa.string_view())),  # views, kept
        "vector": pa.array([[0.5], [1.5]], pa.list_(pa.float32()))}), tmp_path / "t.parquet")
    found = audit_parquet(tmp_path / "t.parquet", "t.parquet", needles,
                          needles.text_patterns(False), True)
    assert sorted((f.column, f.kind, f.rows, f.visible) for f in found) == [
        ("cc", "email", 1, True),
        ("contact.email (dictionary entries no row uses)", "email", 1, False),
        ("seen", "email", 1, True), ("tags.value", "phone", 1, True)]


def test_dictionary_entries_in_an_arrow_export(tmp_path: Path) -> None:
    """An Arrow IPC export: its batches share one dictionary (an entry one batch uses is not
    unused because another does not), and a view-typed dictionary (as Polars writes a
    Categorical) is searched too."""
    needles = Needles(keys={"customer_id": pa.array([2], pa.int64())},
                      emails=["secret@y.io"], phones=[], names=[])
    anywhere = column_needles(needles, needles.text_patterns(False))
    shared = pa.table({"email": pa.array(["secret@y.io"] + [f"u{i}@x.io" for i in range(5)])
                       .dictionary_encode()})
    with ipc.new_file(tmp_path / "multi.arrow", shared.schema) as w:
        for batch in shared.to_batches(max_chunksize=2):  # three batches, one dictionary
            w.write_batch(batch)
    found = audit_table_file(tmp_path / "multi.arrow", "multi.arrow", "arrow", anywhere)
    assert [(f.column, f.kind, f.rows) for f in found] == [("email", "email", 1)]

    views = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.uint32()),
                                           pa.array(["a@x.io", "secret@y.io"], pa.string_view()))
    t = pa.table({"email": views, "customer_id": pa.array([1, 2], pa.int64())})
    with ipc.new_file(tmp_path / "views.arrow", t.schema) as w:
        w.write_table(t)
    found = audit_table_file(tmp_path / "views.arrow", "views.arrow", "arrow", anywhere)
    assert sorted((f.column, f.kind, f.rows) for f in found) == [
        ("customer_id", "customer_id", 1), ("email (dictionary entries no row uses)", "email", 1)]


def test_a_table_files_unused_dictionary_entries_are_hidden_residue(tmp_path: Path) -> None:
    """A table file read through its key and text columns: a key or an email only an unused
    dictionary entry holds is residue, hidden; the rows' own values stay visible. (pyarrow
    writes and reads back only string dictionaries as such: an integer key column comes back
    decoded, its dictionary page rebuilt from the rows.)"""
    needles = Needles(keys={"skill_user_id": pa.array(["su-kept-000002", "su-gone-000003"])},
                      emails=["secret@y.io"], phones=[], names=[])
    pseudonyms = pa.array(["su-other-00001", "su-kept-000002", "su-gone-000003"]) \
        .dictionary_encode().filter(pa.array([True, True, False]))
    emails = pa.array(["a@x.io", "b@x.io", "secret@y.io"]).dictionary_encode() \
        .filter(pa.array([True, True, False]))
    pq.write_table(pa.table({"skill_user_id": pseudonyms, "email": emails}),
                   tmp_path / "t.parquet")
    found = audit_parquet(tmp_path / "t.parquet", "t.parquet", needles,
                          needles.text_patterns(False), True)
    assert sorted((f.column, f.kind, f.rows, f.visible) for f in found) == [
        ("email (dictionary entries no row uses)", "email", 1, False),
        ("skill_user_id", "skill_user_id", 1, True),
        ("skill_user_id (dictionary entries no row uses)", "skill_user_id", 1, False)]


def test_a_damaged_mapping_or_customers_file_still_gets_a_report(date_src: Path,
                                                                 tmp_path: Path) -> None:
    """Damaged customers and recordings files (the lineage's tables): the audit resolves keys
    from what can be read, reports the residue there, lists both files as unreadable, exit 1
    (it refused, worded for a scrub, or crashed)."""
    lake = snapshot(date_src, tmp_path / "lake")
    damaged = [next((lake / t).rglob("*.parquet"))  # the customers and mapping tables
               for t in ("customers", "recordings", "skill_links")]
    for f in damaged:  # a new file (the snapshot's are hard links to the shared source's)
        cut = f.read_bytes()[: f.stat().st_size // 2]
        f.unlink()
        f.write_bytes(cut)
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "--lake", str(lake), "--ids", "1,2,3", "--no-names",
                            "--json", "-"])
    assert r.exit_code == 1, r.output
    report = json.loads(r.output)  # stdout holds the JSON only
    assert report["residue_found"] and report["logically_visible_rows"] > 0
    unreadable = " ".join(report["unreadable"])
    assert all(f.relative_to(lake).as_posix() in unreadable for f in damaged)
    listed = runner.invoke(app, ["audit", "--lake", str(lake), "--ids", "1,2,3", "--no-names",
                                 "--limit", "0"])
    assert "RESIDUE FOUND" in listed.output and "more findings" not in listed.output
