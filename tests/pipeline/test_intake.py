"""Intake: formats accepted, duplicates folded, malformed requests refused with a message."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.intake import RequestError, parse_ids, read_request


def test_csv_parquet_jsonl_agree(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("customer_id,requested_at\n5,2026-10-01T00:00:00Z\n3,\n5,\n")
    pq.write_table(pa.table({"customer_id": [5, 3, 5]}), tmp_path / "r.parquet")
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps({"customer_id": i}) for i in (5, 3, 5)))
    for name in ("r.csv", "r.parquet", "r.jsonl"):
        req = read_request(tmp_path / name)
        assert req.ids.tolist() == [3, 5]
        assert req.duplicates == 1
    assert read_request(tmp_path / "r.csv").requested_at.isoformat().startswith("2026-10-01")


def test_ids_on_the_command_line() -> None:
    req = parse_ids("7, 2,7,11")
    assert req.ids.tolist() == [2, 7, 11] and req.duplicates == 1


@pytest.mark.parametrize("content, name, message", [
    (None, "missing.csv", "does not exist"),
    ("customer_id\n", "empty.csv", "lists no customer ids"),
    ("customer_id\n1\nabc\n", "bad.csv", "'abc' is not an integer"),
    ("customer_id\n1\n-4\n", "neg.csv", "-4 is negative"),
    ("user\n1\n", "nocol.csv", "has no customer_id column"),
    ("customer_id\n1\n", "r.xlsx", "unknown request format"),
    ('{"customer_id": 1}\n[1]\n', "r.jsonl", "must be an object"),
    ('{"customer_id": 1\n', "torn.jsonl", "cannot be read"),
])
def test_malformed_requests(tmp_path: Path, content: str | None, name: str,
                            message: str) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(RequestError, match=message):
        read_request(tmp_path / name)


@pytest.mark.parametrize("text, message", [("", "empty"), ("1,two", "not an integer"),
                                           ("3,-1", "negative")])
def test_malformed_ids(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_ids(text)


def test_requested_at_in_the_iso_forms_people_write(tmp_path: Path) -> None:
    import datetime as dt

    p = tmp_path / "r.csv"
    p.write_text("customer_id,requested_at\n7,2026-11-20 10:00\n8,2026-11-20T12:30+02:00\n")
    assert read_request(p).requested_at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    p.write_text("customer_id,requested_at\n7,yesterday\n")
    with pytest.raises(RequestError, match="'yesterday' is not a timestamp"):
        read_request(p)
