"""Who the customers are and where they speak: pure functions of (seed, customer_id, day).

Nothing here is stored per customer: every attribute is recomputed from the id by hashing, so a
worker can take any slice of customers, days or regions and agree with every other worker.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from generators import rng
from generators.config import RECORDINGS_PER_CUSTOMER, LakeConfig
from generators.vocab import COUNTRY, DIAL, EMAIL_DOMAINS, LANGUAGE, REGION_LOCALES, Vocab

REGION_WEIGHT = {"us-east-1": 0.28, "us-west-2": 0.16, "eu-west-1": 0.18, "eu-central-1": 0.15,
                 "ap-northeast-1": 0.14, "sa-east-1": 0.09}
UTC_OFFSET_H = {"us-east-1": -5, "us-west-2": -8, "eu-west-1": 0, "eu-central-1": 1,
                "ap-northeast-1": 9, "sa-east-1": -3}
PARETO_ALPHA, PARETO_CAP = 1.5, 40.0
MAX_PER_DAY = 4095  # a recording key holds the sequence number in 12 bits
N_DEVICE_CUM = np.cumsum([0.35, 0.30, 0.20, 0.10, 0.05])  # 1..5 devices
N_SKILL_CUM = np.cumsum([0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05])  # 0..6 linked skills
SKILL_STRIDE = 419  # distinct skills per customer: k * 419 mod n_skills never repeats for k < 7


class Population:
    """Per-customer attributes under one config and vocabulary."""

    def __init__(self, cfg: LakeConfig, vocab: Vocab) -> None:
        self.cfg, self.vocab = cfg, vocab
        s = cfg.seed
        self.st = {n: rng.salt(s, n) for n in (
            "home", "activity", "travel", "travel_on", "travel_to", "devices", "skills",
            "skill_base", "count", "first", "last", "afirst", "alast", "domain", "street",
            "house", "city", "plan", "signup", "device", "device_type", "device_name", "room",
            "firmware", "registered", "linked", "skill_user")}
        w = np.array([REGION_WEIGHT.get(r, 0.1) for r in cfg.regions])
        self.home_cum = np.cumsum(w / w.sum())
        self.n_regions = len(cfg.regions)
        a, cap = PARETO_ALPHA, PARETO_CAP
        self.w_mean = a / (a - 1) - cap ** (1 - a) / (a - 1)
        dow = np.array([1.2 if d.weekday() >= 5 else 0.92 for d in cfg.dates])
        self.dow = dow / dow.mean()
        self.n_skills = len(vocab.skills)
        self._home_locales = [REGION_LOCALES[r] for r in cfg.regions]
        # stream name -> per-region vocabulary (the stream names are the ones pii() hashes)
        self._pii_words = {name: self._region_words(lists) for name, lists in (
            ("first", vocab.first_names), ("last", vocab.last_names),
            ("street", vocab.streets), ("city", vocab.cities))}
        self._email_words = tuple(pl.Series(list(a), dtype=pl.String) for a in (
            vocab.ascii_first, vocab.ascii_last, EMAIL_DOMAINS))

    # --- customer attributes -------------------------------------------------------------
    def home(self, cid: np.ndarray) -> np.ndarray:
        """Home region index of each customer."""
        return rng.choice(cid, self.st["home"], self.home_cum)

    def activity(self, cid: np.ndarray) -> np.ndarray:
        """Mean recordings per day: pareto-tailed (a few heavy users), mean fixed by config."""
        u = rng.uniform(cid, self.st["activity"])
        w = np.minimum((1.0 - u) ** (-1.0 / PARETO_ALPHA), PARETO_CAP) / self.w_mean
        return w * (RECORDINGS_PER_CUSTOMER / self.cfg.days)

    def n_devices(self, cid: np.ndarray) -> np.ndarray:
        return rng.choice(cid, self.st["devices"], N_DEVICE_CUM) + 1

    def n_linked_skills(self, cid: np.ndarray) -> np.ndarray:
        return rng.choice(cid, self.st["skills"], N_SKILL_CUM)

    def linked_skill(self, cid: np.ndarray, k: np.ndarray) -> np.ndarray:
        """skill_id (1-based) of the customer's k-th linked skill; popular skills come first."""
        base = (rng.uniform(cid, self.st["skill_base"]) ** 2 * self.n_skills).astype(np.int64)
        return (base + k * SKILL_STRIDE) % self.n_skills + 1

    def device_id(self, cid: np.ndarray, k: np.ndarray) -> np.ndarray:
        return rng.scramble63((cid << 3) | k, self.st["device"])

    def skill_user_id(self, cid: np.ndarray, skill_id: np.ndarray) -> pl.Series:
        """The pseudonym a skill sees: an opaque string, one per (customer, skill)."""
        x = rng.scramble63((cid << 10) | skill_id, self.st["skill_user"]).astype(np.uint64)
        return hex_strings(x, "amzn1.ask.account.")

    def location(self, cid: np.ndarray, day: np.ndarray, home: np.ndarray) -> np.ndarray:
        """Region index each customer speaks from on each day: home, or travelling."""
        key = (cid << 12) | day
        frequent = rng.uniform(cid, self.st["travel"]) < 0.15
        p = np.where(frequent, 0.08, 0.01)
        away = rng.uniform(key, self.st["travel_on"]) < p
        if self.n_regions == 1:
            return home
        other = (home + 1 + rng.below(key, self.st["travel_to"], self.n_regions - 1)) \
            % self.n_regions
        return np.where(away, other, home)

    def counts(self, cid: np.ndarray, day: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Recordings of each (customer, day) cell: Poisson around the customer's activity."""
        key = (cid << 12) | day
        return np.minimum(rng.poisson(key, self.st["count"], lam * self.dow[day]), MAX_PER_DAY)

    # --- PII (dimension columns, also spoken in some transcripts) ---------------------------
    def pii(self, cid: np.ndarray, home: np.ndarray | None = None) -> pl.DataFrame:
        """customer_id, full_name, email, phone, street_address, city, country, language.

        Built in polars from vocabularies gathered by index: no Python string per row (the
        strings a row-by-row build leaves in Python's allocator outlive the call and the
        worker's later files)."""
        if home is None:
            home = self.home(cid)
        st, locales = self.st, self._home_locales
        ascii_first, ascii_last, domains = self._email_words
        # Unique by construction: the email carries the id, the phone is a bijection of it.
        df = pl.DataFrame({
            "customer_id": cid,
            **{name: self._pick(name, cid, home) for name in self._pii_words},
            **{name: pl.Series([codes[loc] for loc in locales], dtype=pl.String).gather(home)
               for name, codes in (("country", COUNTRY), ("language", LANGUAGE), ("dial", DIAL))},
            "house": rng.below(cid, st["house"], 199) + 1,
            "family_first": np.array([loc == "ja_JP" for loc in locales], bool)[home],
            "street_first": np.array([loc in ("de_DE", "pt_BR") for loc in locales], bool)[home],
            "afirst": ascii_first.gather(rng.below(cid, st["afirst"], len(ascii_first))),
            "alast": ascii_last.gather(rng.below(cid, st["alast"], len(ascii_last))),
            "domain": domains.gather(rng.below(cid, st["domain"], len(domains))),
            "number": (cid * 7_777_777 + 123_456_789) % 1_000_000_000,
        })
        c, sp = pl.col, pl.lit(" ")
        digits = c("number").cast(pl.String).str.zfill(9)
        house = c("house").cast(pl.String)
        return df.select(
            "customer_id",
            pl.when(c("family_first")).then(pl.concat_str([c("last"), sp, c("first")]))
            .otherwise(pl.concat_str([c("first"), sp, c("last")])).alias("full_name"),
            pl.concat_str([c("afirst"), pl.lit("."), c("alast"), c("customer_id").cast(pl.String),
                           pl.lit("@"), c("domain")]).alias("email"),
            pl.concat_str([c("dial"), sp, digits.str.slice(0, 3), sp, digits.str.slice(3, 3),
                           sp, digits.str.slice(6, 3)]).alias("phone"),
            pl.when(c("street_first")).then(pl.concat_str([c("street"), sp, house]))
            .otherwise(pl.concat_str([house, sp, c("street")])).alias("street_address"),
            "city", "country", "language",
        )

    def _pick(self, name: str, cid: np.ndarray, home: np.ndarray) -> pl.Series:
        """Each customer's word from its home region's list, hashed on stream `name`."""
        words, offsets, lengths = self._pii_words[name]
        return words.gather(offsets[home] + rng.below(cid, self.st[name], lengths[home]))

    def _region_words(self, lists: dict[str, np.ndarray]) -> tuple[pl.Series, np.ndarray,
                                                                     np.ndarray]:
        """Each region's locale list, concatenated in region order: (words, offset of a
        region's list, its length), so a row picks index offset[home] + i in one gather."""
        per_region = [lists[loc] for loc in self._home_locales]
        lengths = np.array([len(a) for a in per_region], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        words = pl.Series(np.concatenate(per_region).tolist(), dtype=pl.String)
        return words, offsets, lengths


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_strings(x: np.ndarray, prefix: str) -> pl.Series:
    """prefix + 16 lowercase hex digits of each uint64, built without a Python loop."""
    x = x.astype(np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX[((x[:, None] >> shifts) & np.uint64(15)).astype(np.intp)]
    body = np.ascontiguousarray(digits).view("S16").ravel()
    return pl.select(pl.lit(prefix) + pl.lit(pl.Series(body)).cast(pl.String)).to_series()


def bucket_of_ints(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket of integer keys: unsalted splitmix64 modulo the bucket count (documented in
    _lake.json so any tool can route a key to its bucket)."""
    return (rng.mix64(keys.astype(np.uint64)) % np.uint64(n_buckets)).astype(np.int64)


def bucket_of_strings(keys: list[str] | np.ndarray | pa.Array | pa.ChunkedArray,
                      n_buckets: int) -> np.ndarray:
    """Bucket of string keys: FNV-1a (64-bit) of the UTF-8 bytes modulo the bucket count.

    Vectorized over rows: strings are grouped by byte length and hashed one byte position at
    a time across the group (the loop runs over positions, never over rows)."""
    arr = keys if isinstance(keys, pa.Array | pa.ChunkedArray) \
        else pa.array(list(keys), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] else \
        np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    prime, basis = np.uint64(0x100000001B3), np.uint64(0xCBF29CE484222325)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        h = np.full(len(rows), basis, dtype=np.uint64)
        starts = offsets[rows]
        for j in range(int(length)):
            h = (h ^ data[starts + j].astype(np.uint64)) * prime
        out[rows] = (h % np.uint64(n_buckets)).astype(np.int64)
    return out
