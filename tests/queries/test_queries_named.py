"""Named queries: catalogue, parameters, and the answers on both layouts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from queries.named import (
    QueryError,
    bind_params,
    list_queries,
    load_query,
    parse_params,
    run_named,
)
from queries.views import connect

NAMES = ("voice_history", "skill_data", "region_volume", "top_intents", "residue")
ABSENT = 10**12  # a customer id the lake does not hold


def as_dicts(rel: duckdb.DuckDBPyRelation) -> list[dict]:
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def test_catalogue() -> None:
    queries = {q.name: q for q in list_queries()}
    assert set(NAMES) <= set(queries)
    for q in queries.values():
        assert q.description and q.summary.endswith(".")
        assert q.sql.startswith(f"-- {q.name}:")
    assert [p.name for p in load_query("voice_history").params] == ["customer_id"]
    assert load_query("top_intents").params[0].default is None
    with pytest.raises(QueryError, match="unknown query 'nope'.*voice_history"):
        load_query("nope")


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x=y", " c =", "a=2"]) == {"a": "2", "b": "x=y", "c": ""}
    for bad in ("novalue", "=1"):
        with pytest.raises(QueryError, match="NAME=VALUE"):
            parse_params([bad])


def test_bind_params_types_values_with_duckdb() -> None:
    con = duckdb.connect()
    vh, top, res = load_query("voice_history"), load_query("top_intents"), load_query("residue")
    assert bind_params(con, vh, {"customer_id": "42"}) == {"customer_id": 42}
    assert bind_params(con, vh) == {"customer_id": 1}  # the default
    assert bind_params(con, top) == {"region": None}
    assert bind_params(con, res, {"customer_ids": [3, 4]}) == {"customer_ids": "3,4"}
    with pytest.raises(QueryError, match="not a valid BIGINT"):
        bind_params(con, vh, {"customer_id": "abc"})
    with pytest.raises(QueryError, match="no parameter 'region'"):
        bind_params(con, vh, {"region": "x"})


@pytest.mark.parametrize("name", NAMES)
def test_every_query_runs_with_defaults(con: duckdb.DuckDBPyConnection, name: str) -> None:
    rel = run_named(con, name)
    assert rel.columns
    rel.fetchall()


def test_voice_history(con: duckdb.DuckDBPyConnection, customer: int) -> None:
    rows = as_dicts(run_named(con, "voice_history", [f"customer_id={customer}"]))
    n = con.execute("SELECT count(*) FROM recordings WHERE customer_id = ?",
                    [customer]).fetchone()[0]
    assert len(rows) == n > 0
    started = [r["started_at"] for r in rows]
    assert started == sorted(started, reverse=True)  # newest first
    ids = [r["recording_id"] for r in rows]
    owners = con.execute("SELECT DISTINCT customer_id FROM recordings "
                         "WHERE list_contains(?, recording_id)", [ids]).fetchall()
    assert owners == [(customer,)]
    assert all(r["text"] for r in rows)
    assert sum(r["actions"] is not None for r in rows) > 0.9 * len(rows)


def test_voice_history_unknown_customer(con: duckdb.DuckDBPyConnection) -> None:
    assert run_named(con, "voice_history", {"customer_id": ABSENT}).fetchall() == []


def test_skill_data(con: duckdb.DuckDBPyConnection, customer: int) -> None:
    rows = as_dicts(run_named(con, "skill_data", {"customer_id": customer}))
    links = con.execute("SELECT skill_user_id FROM skill_links WHERE customer_id = ?",
                        [customer]).fetchall()
    assert sorted(r["skill_user_id"] for r in rows) == sorted(x[0] for x in links)
    events = con.execute("""
        SELECT count(*) FROM skill_events
        WHERE skill_user_id IN (SELECT skill_user_id FROM skill_links WHERE customer_id = ?)""",
                         [customer]).fetchone()[0]
    assert sum(r["events"] for r in rows) == events > 0
    top = rows[0]
    assert top["events"] > 0 and top["first_event"] <= top["last_event"]
    assert 1 <= len(top["sample_utterances"]) <= 3
    assert all(r["sample_utterances"] == [] for r in rows if r["events"] == 0)


def test_region_volume(con: duckdb.DuckDBPyConnection, manifest: dict) -> None:
    rows = as_dicts(run_named(con, "region_volume"))
    t = manifest["tables"]
    assert sum(r["recordings"] for r in rows) == t["recordings"]["rows"]
    assert sum(r["actions"] for r in rows) == t["actions"]["rows"]
    payload = con.execute("SELECT sum(octet_length(payload)) FROM audio").fetchone()[0]
    assert sum(r["audio_bytes"] for r in rows) == payload
    for region, n in t["recordings"]["rows_by_region"].items():
        assert sum(r["recordings"] for r in rows if r["region"] == region) == n
    assert all(isinstance(r["date"], dt.date) and 0 < r["customers"] <= r["recordings"]
               for r in rows)
    assert len({r["date"] for r in rows}) == manifest["config"]["days"]


def test_region_volume_is_the_same_in_both_layouts(lakes: dict[str, Path]) -> None:
    a = run_named(connect(lakes["date"]), "region_volume").fetchall()
    b = run_named(connect(lakes["bucket"]), "region_volume").fetchall()
    assert a == b


def test_top_intents(con: duckdb.DuckDBPyConnection, manifest: dict) -> None:
    rows = as_dicts(run_named(con, "top_intents"))
    assert sum(r["recordings"] for r in rows) == manifest["tables"]["recordings"]["rows"]
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100, abs=0.1)
    counts = [r["recordings"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    region = manifest["regions"][0]
    one = as_dicts(run_named(con, "top_intents", {"region": region}))
    assert sum(r["recordings"] for r in one) == \
        manifest["tables"]["recordings"]["rows_by_region"][region]


def test_residue_finds_every_copy(con: duckdb.DuckDBPyConnection, customer: int) -> None:
    rows = as_dicts(run_named(con, "residue", {"customer_ids": str(customer)}))
    per_table: dict[str, int] = {}
    for r in rows:
        per_table[r["table_name"]] = per_table.get(r["table_name"], 0) + r["rows"]
        assert r["is_replica"] == (r["region"] != r["origin"])
    assert set(per_table) == {"customers", "devices", "recordings", "audio", "transcripts",
                              "actions", "skill_links", "skill_events", "usage_daily"}
    assert any(r["is_replica"] for r in rows)
    expected = con.execute("""
        SELECT (SELECT count(*) FROM recordings_all WHERE customer_id = $c),
               (SELECT count(*) FROM actions_all WHERE recording_id IN
                   (SELECT recording_id FROM recordings WHERE customer_id = $c)),
               (SELECT count(*) FROM skill_events_all WHERE skill_user_id IN
                   (SELECT skill_user_id FROM skill_links WHERE customer_id = $c))""",
                           {"c": customer}).fetchone()
    assert (per_table["recordings"], per_table["actions"], per_table["skill_events"]) \
        == expected
    assert per_table["customers"] == 1


def test_residue_lists_and_absent_ids(con: duckdb.DuckDBPyConnection, customer: int) -> None:
    def total(ids: object) -> int:
        rows = run_named(con, "residue", {"customer_ids": ids}).fetchall()
        return sum(r[-1] for r in rows)

    assert total(str(ABSENT)) == 0
    assert run_named(con, "residue", {"customer_ids": str(ABSENT)}).fetchall() == []
    other = customer + 1
    both = total(f"{customer}, {other}")
    assert both == total(str(customer)) + total(str(other)) > 0
    assert total([customer, other]) == both == total(f"[{customer},{other},{customer}]")
    assert total(f"{customer},{ABSENT}") == total(str(customer))
