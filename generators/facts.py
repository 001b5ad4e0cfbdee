"""Fact rows: recordings and everything derived from them, a chunk at a time.

A recording is identified by its key (customer_id, day, seq). Every column is a hash of that key,
so the same recording has the same content whichever unit, chunk or worker produces it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from generators import rng
from generators.audio import AudioSynth
from generators.population import UTC_OFFSET_H, Population
from generators.vocab import LANGUAGE, REGION_LOCALES, SKILL_VERBS

INTENTS = ("play_music", "weather", "timer", "smart_home", "question", "shopping", "call",
           "send_message", "news", "skill", "identity")
INTENT = {name: i for i, name in enumerate(INTENTS)}
_BASE = np.array([30, 10, 8, 14, 10, 7, 5, 4, 4, 7, 1], dtype=float)
# Diurnal profile of local time: quiet nights, a morning peak and a longer evening one.
HOURLY = np.array([0.4, 0.2, 0.15, 0.1, 0.15, 0.5, 1.6, 2.6, 2.4, 1.6, 1.2, 1.2, 1.4, 1.2, 1.0,
                   1.1, 1.4, 2.0, 2.6, 2.8, 2.5, 1.9, 1.2, 0.7])
HOUR_CUM = np.cumsum(HOURLY / HOURLY.sum())
WAKE_WORDS = ("Alexa", "Echo", "Computer", "Ziggy")
WAKE_CUM = np.cumsum([0.85, 0.08, 0.05, 0.02])
ACTION_TYPES = ("play_track", "get_forecast", "set_timer", "device_control", "answer",
                "add_to_list", "place_call", "send_message", "play_briefing", "invoke_skill",
                "update_profile", "set_volume")
STATUSES = ("success", "failed", "timeout")
STATUS_CUM = np.cumsum([0.95, 0.03, 0.02])
EVENT_TYPES = ("LaunchRequest", "IntentRequest", "SessionEndedRequest")
ASR_MODELS = ("asr-2026.09", "asr-2026.10")
LANGS = ("en-US", "en-GB", "de-DE", "ja-JP", "pt-BR")
MESSAGES = ("i'm running late", "call me back", "dinner is ready", "see you soon",
            "on my way", "happy birthday")


def _intent_table() -> np.ndarray:
    """Cumulative intent probabilities per local hour (24 x n_intents)."""
    tab = np.tile(_BASE, (24, 1))
    morning, evening = slice(5, 10), slice(17, 23)
    for name, f in (("weather", 2.5), ("news", 3.0), ("timer", 1.5)):
        tab[morning, INTENT[name]] *= f
    for name, f in (("play_music", 1.5), ("smart_home", 1.6)):
        tab[evening, INTENT[name]] *= f
    tab /= tab.sum(axis=1, keepdims=True)
    return np.cumsum(tab, axis=1)


INTENT_CUM = _intent_table()


def dictionary(indices: np.ndarray, values: tuple[str, ...]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)),
                                          pa.array(values, pa.string()))


@dataclass
class Core:
    """The columns every derived table needs, computed for a whole file's rows at once."""
    key: np.ndarray
    cid: np.ndarray
    day: np.ndarray
    started_at: np.ndarray  # µs since epoch, UTC
    local_hour: np.ndarray
    duration_ms: np.ndarray
    intent: np.ndarray
    n_actions: np.ndarray
    skill_id: np.ndarray  # 0 where the intent is not a skill

    def take(self, idx: np.ndarray | slice) -> Core:
        return Core(**{k: v[idx] for k, v in self.__dict__.items()})

    def __len__(self) -> int:
        return len(self.key)


class FactGenerator:
    def __init__(self, pop: Population, audio: AudioSynth) -> None:
        self.pop, self.audio = pop, audio
        cfg = pop.cfg
        self.cfg = cfg
        self.st = {n: rng.salt(cfg.seed, n) for n in (
            "rec", "hour", "minute", "duration", "intent", "n_actions", "skill_k", "wake",
            "conf", "device", "song", "artist", "city", "contact", "item", "room", "onoff",
            "minutes", "topic", "message", "verb", "which_pii", "action", "status", "latency",
            "event", "n_events", "volume", "asr")}
        epoch = dt.date(1970, 1, 1)
        self.day_start_us = np.array(
            [(d - epoch).days * 86_400_000_000 for d in cfg.dates], dtype=np.int64)
        self.offset_us = np.array([UTC_OFFSET_H.get(r, 0) * 3_600_000_000 for r in cfg.regions],
                                  dtype=np.int64)
        v = pop.vocab
        self.v_songs, self.v_artists = pl.Series(v.songs, dtype=pl.String), \
            pl.Series(v.artists, dtype=pl.String)
        self.v_contacts = pl.Series(v.contacts, dtype=pl.String)
        self.v_items = pl.Series(v.items, dtype=pl.String)
        self.v_rooms = pl.Series(v.rooms, dtype=pl.String)
        self.v_topics = pl.Series(v.topics, dtype=pl.String)
        self.v_skills = pl.Series(v.skills, dtype=pl.String)
        self.v_messages = pl.Series(MESSAGES, dtype=pl.String)
        self.v_verbs = pl.Series(SKILL_VERBS, dtype=pl.String)
        self.v_cities = {r: pl.Series(v.cities[REGION_LOCALES[r]], dtype=pl.String)
                         for r in cfg.regions}

    # --- rows of a unit ------------------------------------------------------------------
    def cells(self, cid: np.ndarray, days: np.ndarray, region: int) -> tuple[np.ndarray, ...]:
        """(customer, day, count) of every cell with recordings spoken in `region`."""
        pop = self.pop
        home, lam = pop.home(cid), pop.activity(cid)
        c = np.repeat(cid, len(days))
        d = np.tile(days, len(cid))
        h, la = np.repeat(home, len(days)), np.repeat(lam, len(days))
        here = pop.location(c, d, h) == region
        c, d, la = c[here], d[here], la[here]
        n = pop.counts(c, d, la)
        keep = n > 0
        return c[keep], d[keep], n[keep]

    def keys(self, c: np.ndarray, d: np.ndarray, n: np.ndarray,
             region: int) -> tuple[np.ndarray, np.ndarray]:
        """Expand cells to recording keys and their start times: all a file needs at once to
        be sorted (16 bytes a row); everything else is computed a chunk at a time."""
        total = int(n.sum())
        cell = np.repeat(np.arange(len(n)), n)
        seq = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        key = (c[cell] << 24) | (d[cell] << 12) | seq
        return key, self._started(key, d[cell], region)[0]

    def _started(self, key: np.ndarray, day: np.ndarray,
                 region: int) -> tuple[np.ndarray, np.ndarray]:
        st = self.st
        hour = rng.choice(key, st["hour"], HOUR_CUM)
        sec = hour * 3600 + rng.below(key, st["minute"], 3600)
        started = self.day_start_us[day] + sec * 1_000_000 - self.offset_us[region] \
            + rng.below(key, st["rec"], 1_000_000)
        return started, hour

    def core(self, c: np.ndarray, d: np.ndarray, n: np.ndarray, region: int) -> Core:
        """Expand cells to recordings and compute the shared columns."""
        return self.core_of(self.keys(c, d, n, region)[0], region)

    def core_of(self, key: np.ndarray, region: int) -> Core:
        """The shared columns of recordings given their keys (a key holds customer and day)."""
        st = self.st
        cid, day = key >> 24, (key >> 12) & 0xFFF
        started, hour = self._started(key, day, region)
        duration = (800 - 2500 * np.log1p(-rng.uniform(key, st["duration"]))).astype(np.int32)
        duration = np.minimum(duration, 20_000)
        # Intent depends on the local hour: one searchsorted over per-hour cumulative tables.
        u = rng.uniform(key, st["intent"])
        flat = (INTENT_CUM + np.arange(24)[:, None]).ravel()
        intent = np.searchsorted(flat, u + hour, side="right") - hour * len(INTENTS)
        intent = np.minimum(intent, len(INTENTS) - 1)
        n_skills = self.pop.n_linked_skills(cid)
        intent = np.where((intent == INTENT["skill"]) & (n_skills == 0), INTENT["question"], intent)
        k = rng.below(key, st["skill_k"], np.maximum(n_skills, 1))
        skill_id = np.where(intent == INTENT["skill"], self.pop.linked_skill(cid, k), 0)
        ua = rng.uniform(key, st["n_actions"])
        n_actions = np.where(ua < 0.04, 0, np.where(ua < 0.92, 1, 2))
        return Core(key, cid, day, started, hour.astype(np.int8), duration,
                    intent.astype(np.int64), n_actions, skill_id)

    # --- derived tables ------------------------------------------------------------------
    def recordings(self, x: Core) -> pa.Table:
        st, pop = self.st, self.pop
        n_dev = pop.n_devices(x.cid)
        dev = pop.device_id(x.cid, rng.below(x.key, st["device"], n_dev))
        conf = (0.55 + 0.45 * rng.uniform(x.key, st["conf"]) ** 0.3).astype(np.float32)
        return pa.table({
            "recording_id": rng.scramble63(x.key, st["rec"]),
            "customer_id": x.cid,
            "device_id": dev,
            "started_at": pa.array(x.started_at, pa.timestamp("us", tz="UTC")),
            "local_hour": x.local_hour,
            "duration_ms": x.duration_ms,
            "wake_word": dictionary(rng.choice(x.key, st["wake"], WAKE_CUM), WAKE_WORDS),
            "intent": dictionary(x.intent, INTENTS),
            "asr_confidence": conf,
        })

    def audio_table(self, x: Core) -> pa.Table:
        payload, dur = self.audio.payloads(x.key)
        return pa.table({
            "recording_id": rng.scramble63(x.key, self.st["rec"]),
            "customer_id": x.cid,
            "codec": dictionary(np.zeros(len(x), np.int32), ("pcm_s16le",)),
            "sample_rate": np.full(len(x), self.audio.sample_rate, np.int32),
            "duration_ms": np.full(len(x), dur, np.int32),
            "payload": payload,
        })

    def _pieces(self, x: Core, region: int) -> tuple[pl.Series, pl.Series]:
        """Transcript text and action target of each recording, agreeing with the intent.

        Rows are grouped by intent, each group rendered with one vectorized concat, and the
        results put back in row order: no per-row Python.
        """
        st, key = self.st, x.key
        order = np.argsort(x.intent, kind="stable")
        bounds = np.searchsorted(x.intent[order], np.arange(len(INTENTS) + 1))
        texts, targets = [], []

        def pick(series: pl.Series, k: np.ndarray, stream: str) -> pl.Series:
            return series.gather(rng.below(k, st[stream], len(series)))

        for i, name in enumerate(INTENTS):
            rows = order[bounds[i]:bounds[i + 1]]
            if not len(rows):
                continue
            k = key[rows]
            df, text, target = self._render(name, k, x.cid[rows], x.skill_id[rows], region,
                                            pick)
            out = df.with_columns(text.alias("t"), target.alias("g"))  # broadcasts literals
            texts.append(out["t"])
            targets.append(out["g"])
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.arange(len(order))
        text = pl.concat(texts).gather(inverse)
        del texts  # the parts go before the targets are put together: a chunk's peak memory
        return text, pl.concat(targets).gather(inverse)

    def _render(self, name, k, cid, skill_id, region, pick):
        c, lit = pl.col, pl.lit
        if name == "play_music":
            df = pl.DataFrame({"s": pick(self.v_songs, k, "song"),
                               "a": pick(self.v_artists, k, "artist")})
            return df, pl.concat_str([lit("play "), c("s"), lit(" by "), c("a")]), \
                pl.concat_str([c("s"), lit(" — "), c("a")])
        if name == "weather":
            cities = self.v_cities[self.cfg.regions[region]]
            df = pl.DataFrame({"x": pick(cities, k, "city")})
            return df, pl.concat_str([lit("what's the weather in "), c("x")]), c("x")
        if name == "timer":
            df = pl.DataFrame({"m": rng.below(k, self.st["minutes"], 59) + 1})
            m = c("m").cast(pl.String)
            return df, pl.concat_str([lit("set a timer for "), m, lit(" minutes")]), \
                pl.concat_str([m, lit(" min")])
        if name == "smart_home":
            df = pl.DataFrame({"r": pick(self.v_rooms, k, "room"),
                               "o": rng.below(k, self.st["onoff"], 2)})
            onoff = pl.when(c("o") == 1).then(lit("on")).otherwise(lit("off"))
            return df, pl.concat_str([lit("turn "), onoff, lit(" the "), c("r"), lit(" lights")]), \
                pl.concat_str([c("r"), lit(" lights "), onoff])
        if name == "question":
            df = pl.DataFrame({"q": pick(self.v_topics, k, "topic")})
            return df, c("q"), c("q")
        if name == "shopping":
            df = pl.DataFrame({"i": pick(self.v_items, k, "item")})
            return df, pl.concat_str([lit("add "), c("i"), lit(" to my shopping list")]), c("i")
        if name == "call":
            df = pl.DataFrame({"p": pick(self.v_contacts, k, "contact")})
            return df, pl.concat_str([lit("call "), c("p")]), c("p")
        if name == "send_message":
            df = pl.DataFrame({"p": pick(self.v_contacts, k, "contact"),
                               "m": pick(self.v_messages, k, "message")})
            return df, pl.concat_str([lit("send a message to "), c("p"), lit(" saying "),
                                      c("m")]), c("p")
        if name == "news":
            df = pl.DataFrame({"z": np.zeros(len(k), np.int8)})
            return df, lit("what's the news"), lit("flash briefing")
        if name == "skill":
            df = pl.DataFrame({"v": pick(self.v_verbs, k, "verb"),
                               "s": self.v_skills.gather(skill_id - 1)})
            return df, pl.concat_str([c("v"), lit(" "), c("s")]), c("s")
        # identity: the customer speaks their own phone, email or address (spoken PII).
        u = np.unique(cid)
        pii = self.pop.pii(u)
        which = rng.below(k, self.st["which_pii"], 3)
        df = pl.DataFrame({"customer_id": cid, "w": which}).join(
            pii, on="customer_id", how="left", maintain_order="left")
        said = pl.when(c("w") == 0).then(pl.concat_str([lit("my phone number is "), c("phone")])) \
            .when(c("w") == 1).then(pl.concat_str([lit("my email is "), c("email")])) \
            .otherwise(pl.concat_str([lit("my address is "), c("street_address")]))
        field = pl.when(c("w") == 0).then(lit("phone")).when(c("w") == 1).then(lit("email")) \
            .otherwise(lit("address"))
        return df, said, field

    def text_tables(self, x: Core, region: int) -> tuple[pa.Table, pa.Table, pa.Table]:
        """transcripts, actions and skill_events of a chunk (they share the rendered pieces).
        Each table is built by a function of its own, so the intermediate columns of one are
        freed before the next is built: this is where a file's memory peaks."""
        text, target = self._pieces(x, region)
        rid = rng.scramble63(x.key, self.st["rec"])
        home = self.pop.home(x.cid)
        loc_lang = np.array([LANGS.index(_lang_of(r)) for r in self.cfg.regions])[home]
        transcripts = pa.table({
            "recording_id": rid,
            "customer_id": x.cid,
            "language": dictionary(loc_lang, LANGS),
            "asr_model": dictionary((x.day >= self.cfg.days // 2).astype(np.int32), ASR_MODELS),
            "text": text.to_arrow(),
        })
        actions = self._actions(x, rid, target)
        del target, rid
        return transcripts, actions, self._skill_events(x, text, loc_lang)

    def _actions(self, x: Core, rid: np.ndarray, target: pl.Series) -> pa.Table:
        """0, 1 or 2 actions per recording; only recording_id links them to a customer."""
        st = self.st
        rec = np.repeat(np.arange(len(x)), x.n_actions)
        kk = np.arange(len(rec)) - np.repeat(np.cumsum(x.n_actions) - x.n_actions, x.n_actions)
        akey = (x.key[rec] << 2) | kk
        first = kk == 0
        atype = np.where(first, x.intent[rec], len(ACTION_TYPES) - 1)
        vol = pl.Series(rng.below(akey, st["volume"], 10) + 1).cast(pl.String)
        atarget = pl.select(pl.when(pl.Series(first)).then(target.gather(rec))
                            .otherwise(pl.lit("volume ") + vol)).to_series()
        latency = (40 - 300 * np.log1p(-rng.uniform(akey, st["latency"]))).astype(np.int64)
        executed = x.started_at[rec] + x.duration_ms[rec].astype(np.int64) * 1000 \
            + latency * 1000 + kk * 1_000_000
        sid = np.where(first, x.skill_id[rec], 0)
        return pa.table({
            "action_id": rng.scramble63(akey, st["action"]),
            "recording_id": rid[rec],
            "action_type": dictionary(atype, ACTION_TYPES),
            "target": atarget.to_arrow(),
            "skill_id": pa.array(sid.astype(np.int32), mask=sid == 0),
            "status": dictionary(rng.choice(akey, st["status"], STATUS_CUM), STATUSES),
            "latency_ms": latency.astype(np.int32),
            "executed_at": pa.array(executed, pa.timestamp("us", tz="UTC")),
        })

    def _skill_events(self, x: Core, text: pl.Series, loc_lang: np.ndarray) -> pa.Table:
        """A session per skill invocation, keyed only by the pseudonym."""
        st = self.st
        inv = np.flatnonzero((x.intent == INTENT["skill"]) & (x.n_actions > 0))
        n_ev = 2 + (rng.uniform(x.key[inv], st["n_events"]) < 0.6).astype(np.int64)
        er = np.repeat(inv, n_ev)
        j = np.arange(len(er)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
        last = j == np.repeat(n_ev, n_ev) - 1
        etype = np.where(last, 2, np.minimum(j, 1))
        ekey = (x.key[er] << 2) | j
        su = self.pop.skill_user_id(x.cid[er], x.skill_id[er])
        req = pl.Series(rng.scramble63(ekey, st["event"]) & 0xFFFFFFFF).cast(pl.String)
        payload = pl.select(pl.concat_str([
            pl.lit('{"locale":"'), pl.Series(LANGS, dtype=pl.String).gather(loc_lang[er]),
            pl.lit('","request":"'), req, pl.lit('","utterance":"'), text.gather(er),
            pl.lit('"}')])).to_series()
        return pa.table({
            "event_id": rng.scramble63(ekey, st["event"]),
            "skill_id": x.skill_id[er].astype(np.int32),
            "skill_user_id": su.to_arrow(),
            "event_type": dictionary(etype, EVENT_TYPES),
            "payload_json": payload.to_arrow(),
            "occurred_at": pa.array(x.started_at[er] + x.duration_ms[er].astype(np.int64) * 1000
                                    + j * 400_000, pa.timestamp("us", tz="UTC")),
        })

    @staticmethod
    def usage_partial(x: Core) -> pl.DataFrame:
        """A chunk's contribution to the daily rollup, per (customer, day, intent)."""
        return (pl.DataFrame({"customer_id": x.cid, "day": x.day, "intent": x.intent,
                              "dur": x.duration_ms.astype(np.int64), "na": x.n_actions})
                .group_by("customer_id", "day", "intent")
                .agg(pl.len().alias("n"), pl.col("dur").sum(), pl.col("na").sum()))

    def usage_daily(self, partials: list[pl.DataFrame], with_date: bool) -> pa.Table:
        """The daily rollup of a file's recordings, one row per (customer, day), from the
        chunks' partial aggregates (a customer's day may span chunks)."""
        df = (pl.concat(partials).group_by("customer_id", "day", "intent")
              .agg(pl.col("n").sum(), pl.col("dur").sum(), pl.col("na").sum()))
        top = (df.sort(["customer_id", "day", "n", "intent"],
                       descending=[False, False, True, False])
               .group_by("customer_id", "day", maintain_order=True).first()
               .select("customer_id", "day", "intent"))
        agg = (df.group_by("customer_id", "day")
               .agg(pl.col("n").sum().cast(pl.Int32).alias("recordings"),
                    (pl.col("dur").sum() / 1000.0).alias("audio_seconds"),
                    pl.col("na").sum().cast(pl.Int32).alias("actions"))
               .join(top, on=["customer_id", "day"])
               .sort("customer_id", "day"))
        start = self.cfg.start_date
        cols = {"customer_id": agg["customer_id"].to_numpy()}
        if with_date:
            dates = np.datetime64(start, "D") + agg["day"].to_numpy()
            cols["date"] = pa.array(dates, pa.date32())
        cols |= {
            "recordings": agg["recordings"].to_numpy(),
            "audio_seconds": agg["audio_seconds"].to_numpy(),
            "actions": agg["actions"].to_numpy(),
            "top_intent": dictionary(agg["intent"].to_numpy(), INTENTS),
        }
        return pa.table(cols)


def _lang_of(region: str) -> str:
    return LANGUAGE[REGION_LOCALES[region]]
