"""Ground truth: every identifier the generator ever gave a set of customers.

Because every value is a pure function of (seed, key), the generator can recompute a customer's
recording ids, device ids, skill pseudonyms and PII without reading the lake — so an audit can
look for them after a scrub has removed every row that named them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from generators import rng
from generators.audio import AudioSynth
from generators.config import LakeConfig
from generators.facts import FactGenerator
from generators.population import Population
from generators.vocab import build_vocab


@dataclass
class Identifiers:
    customer_id: np.ndarray
    device_id: np.ndarray
    recording_id: np.ndarray
    skill_user_id: list[str]
    email: list[str]
    phone: list[str]
    full_name: list[str]
    street_address: list[str]

    def keys(self) -> dict[str, pa.Array]:
        return {"customer_id": pa.array(np.unique(self.customer_id)),
                "device_id": pa.array(np.unique(self.device_id)),
                "recording_id": pa.array(np.unique(self.recording_id)),
                "skill_user_id": pa.array(sorted(set(self.skill_user_id)), pa.string())}


def config_from_manifest(manifest: dict) -> LakeConfig:
    import datetime as dt

    c = manifest["config"]
    # a date lake written before --buckets was refused there may record some: unused
    buckets = c["buckets"] if c["layout"] == "bucket" else 0
    return LakeConfig(sf=c["sf"], seed=c["seed"], layout=c["layout"],
                      regions=tuple(c["regions"]), days=c["days"],
                      start_date=dt.date.fromisoformat(c["start_date"]), replicas=c["replicas"],
                      audio_bytes=c["audio_bytes"], buckets=buckets, workers=1,
                      bloom_filters=c.get("bloom_filters", False))


def identifiers(cfg: LakeConfig, customer_ids: np.ndarray) -> Identifiers:
    """Everything the generator wrote that names these customers (ids outside the lake's
    population get empty derived keys)."""
    pop = Population(cfg, build_vocab(cfg.seed))
    facts = FactGenerator(pop, AudioSynth(cfg.seed, cfg.audio_bytes))
    cid = np.asarray(customer_ids, np.int64)
    cid = cid[(cid >= 1) & (cid <= cfg.n_customers)]
    nd = pop.n_devices(cid)
    c = np.repeat(cid, nd)
    k = np.arange(len(c)) - np.repeat(np.cumsum(nd) - nd, nd)
    device = pop.device_id(c, k)
    recs = []
    for region in range(len(cfg.regions)):
        cc, dd, nn = facts.cells(cid, np.arange(cfg.days), region)
        if len(nn):
            core = facts.core(cc, dd, nn, region)
            recs.append(rng.scramble63(core.key, facts.st["rec"]))
    ns = pop.n_linked_skills(cid)
    c2 = np.repeat(cid, ns)
    k2 = np.arange(len(c2)) - np.repeat(np.cumsum(ns) - ns, ns)
    skill_users = pop.skill_user_id(c2, pop.linked_skill(c2, k2)).to_list() if len(c2) else []
    pii = pop.pii(cid) if len(cid) else None
    return Identifiers(
        customer_id=np.asarray(customer_ids, np.int64),
        device_id=device,
        recording_id=np.concatenate(recs) if recs else np.array([], np.int64),
        skill_user_id=skill_users,
        email=pii["email"].to_list() if pii is not None else [],
        phone=pii["phone"].to_list() if pii is not None else [],
        full_name=pii["full_name"].to_list() if pii is not None else [],
        street_address=pii["street_address"].to_list() if pii is not None else [],
    )
