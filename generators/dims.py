"""Dimension rows: customers, devices, skill_links — for any slice of customer ids."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa

from generators import rng
from generators.facts import dictionary
from generators.population import Population

DEVICE_TYPES = ("echo_dot", "echo_show", "echo_studio", "fire_tv", "phone_app", "car", "watch")
DEVICE_CUM = np.cumsum([0.34, 0.2, 0.06, 0.12, 0.16, 0.07, 0.05])
DEVICE_LABEL = ("Echo Dot", "Echo Show", "Echo Studio", "Fire TV", "Phone", "Car", "Watch")
FIRMWARE = ("8.1.0", "8.2.1", "8.3.0", "9.0.2", "9.1.0", "9.1.4")
PLANS = ("free", "prime", "family")
PLAN_CUM = np.cumsum([0.45, 0.45, 0.10])
SECONDS_3Y = 3 * 365 * 86_400


def _epoch_us(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days * 86_400_000_000


def customers(pop: Population, cid: np.ndarray) -> pa.Table:
    st = pop.st
    pii = pop.pii(cid).to_arrow()
    start = np.datetime64(pop.cfg.start_date, "D")
    signup = start - rng.below(cid, st["signup"], 3 * 365) - 1
    cols = {name: pii[name] for name in ("customer_id", "full_name", "email", "phone",
                                          "street_address", "city", "country", "language")}
    for name in ("city", "country", "language"):
        cols[name] = cols[name].combine_chunks().dictionary_encode()
    cols["plan"] = dictionary(rng.choice(cid, st["plan"], PLAN_CUM), PLANS)
    cols["signup_date"] = pa.array(signup, pa.date32())
    return pa.table(cols)


def devices(pop: Population, cid: np.ndarray) -> pa.Table:
    st, v = pop.st, pop.vocab
    nd = pop.n_devices(cid)
    c = np.repeat(cid, nd)
    k = np.arange(len(c)) - np.repeat(np.cumsum(nd) - nd, nd)
    key = (c << 3) | k
    dtype = rng.choice(key, st["device_type"], DEVICE_CUM)
    # Some customers name a device after themselves: a first name in a device name is PII
    # (the first word of the full name, as it is written in the customer's locale).
    pii = pop.pii(np.unique(c))
    owner = pii["full_name"].str.split(" ").list.first().gather(
        np.searchsorted(pii["customer_id"].to_numpy(), c))
    rooms = pl.Series([r.title() for r in v.rooms], dtype=pl.String)
    col = pl.col
    name = pl.DataFrame({
        "owner": owner,
        "label": pl.Series(DEVICE_LABEL, dtype=pl.String).gather(dtype),
        "room": rooms.gather(rng.below(key, st["room"], len(v.rooms))),
        "personal": rng.uniform(key, st["device_name"]) < 0.3,
    }).select(pl.when(col("personal")).then(pl.concat_str([col("owner"), pl.lit("'s "),
                                                            col("label")]))
              .otherwise(pl.concat_str([col("room"), pl.lit(" "), col("label")])))
    registered = _epoch_us(pop.cfg.start_date) - rng.below(key, st["registered"], SECONDS_3Y) \
        * 1_000_000
    return pa.table({
        "device_id": pop.device_id(c, k),
        "customer_id": c,
        "device_type": dictionary(dtype, DEVICE_TYPES),
        "device_name": name.to_series().to_arrow().cast(pa.string()),
        "firmware": dictionary(rng.choice(key, st["firmware"], np.cumsum([1 / 6] * 6)), FIRMWARE),
        "registered_at": pa.array(registered, pa.timestamp("us", tz="UTC")),
    })


def skill_links(pop: Population, cid: np.ndarray) -> pa.Table:
    st = pop.st
    ns = pop.n_linked_skills(cid)
    c = np.repeat(cid, ns)
    k = np.arange(len(c)) - np.repeat(np.cumsum(ns) - ns, ns)
    sid = pop.linked_skill(c, k)
    order = np.lexsort((sid, c))
    c, sid = c[order], sid[order]
    linked = _epoch_us(pop.cfg.start_date) - rng.below((c << 10) | sid, st["linked"],
                                                       SECONDS_3Y) * 1_000_000
    names = pa.array(pop.vocab.skills, pa.string())
    return pa.table({
        "customer_id": c,
        "skill_id": sid.astype(np.int32),
        "skill_user_id": pop.skill_user_id(c, sid).to_arrow(),
        "skill_name": pa.DictionaryArray.from_arrays(pa.array((sid - 1).astype(np.int32)), names),
        "linked_at": pa.array(linked, pa.timestamp("us", tz="UTC")),
    })
