"""Vocabularies built once per seed with Faker — never a Faker call per row.

Rows pick from these lists by index; the lists are numpy object arrays so a gather is one call.
A build takes 2–4 s of Faker calls, paid by every generator run and every audit (which
recomputes what the generator gave its customers), so it is also kept on disk: a JSON file per
seed, named by a hash of this module's source (as imported), Faker's and Python's versions,
so that any of them changing gives a new file ($VOICESCRUB_CACHE_DIR, else
$XDG_CACHE_HOME/voicescrub or ~/.cache/voicescrub; set it empty for none).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

import faker
import numpy as np
from faker import Faker

# Home-region locale: names, streets and cities look like the region's customers.
REGION_LOCALES = {
    "us-east-1": "en_US",
    "us-west-2": "en_US",
    "eu-west-1": "en_GB",
    "eu-central-1": "de_DE",
    "ap-northeast-1": "ja_JP",
    "sa-east-1": "pt_BR",
}
COUNTRY = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "ja_JP": "JP", "pt_BR": "BR"}
DIAL = {"en_US": "+1", "en_GB": "+44", "de_DE": "+49", "ja_JP": "+81", "pt_BR": "+55"}
LANGUAGE = {"en_US": "en-US", "en_GB": "en-GB", "de_DE": "de-DE", "ja_JP": "ja-JP",
            "pt_BR": "pt-BR"}
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.test", "inbox.test")

ITEMS = ("milk", "eggs", "bread", "coffee", "paper towels", "batteries", "dog food", "apples",
         "bananas", "rice", "olive oil", "toothpaste", "laundry detergent", "butter", "cheese",
         "yogurt", "tea", "pasta", "tomatoes", "onions", "garlic", "chicken", "salmon", "cereal",
         "orange juice", "dish soap", "trash bags", "light bulbs", "sunscreen", "shampoo")
ROOMS = ("kitchen", "living room", "bedroom", "office", "hallway", "garage", "bathroom",
         "porch", "nursery", "basement")
TOPICS = ("how tall is mount everest", "what is the capital of australia",
          "how many ounces in a cup", "who wrote pride and prejudice", "what time is it in tokyo",
          "how far is the moon", "what is a prime number", "when is the next full moon",
          "how do you spell necessary", "what is the boiling point of water")
SKILL_VERBS = ("open", "ask", "start", "launch", "tell")


@dataclass(frozen=True)
class Vocab:
    first_names: dict[str, np.ndarray]  # per locale
    last_names: dict[str, np.ndarray]
    streets: dict[str, np.ndarray]
    cities: dict[str, np.ndarray]
    ascii_first: np.ndarray  # for email local parts
    ascii_last: np.ndarray
    songs: np.ndarray
    artists: np.ndarray
    contacts: np.ndarray
    skills: np.ndarray  # skill catalogue names, index = skill_id - 1
    items: np.ndarray
    rooms: np.ndarray
    topics: np.ndarray


def _unique(gen, n: int, tries: int = 3) -> np.ndarray:
    seen: dict[str, None] = {}
    for _ in range(n * tries):
        seen.setdefault(gen(), None)
        if len(seen) >= n:
            break
    return np.array(list(seen), dtype=object)


# the code that builds a vocabulary, as this process runs it (read once, at import)
_BUILDER = hashlib.sha256(Path(__file__).read_bytes() + f"|{faker.VERSION}|{sys.version_info[:2]}"
                          .encode()).hexdigest()


def cache_file(seed: int, size: int, n_skills: int) -> Path | None:
    """Where the vocabulary of these arguments is kept (None: no disk cache)."""
    root = os.environ.get("VOICESCRUB_CACHE_DIR")
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                   / "voicescrub")
    if not root:
        return None
    key = hashlib.sha256(f"{_BUILDER}|{seed}|{size}|{n_skills}".encode()).hexdigest()[:32]
    return Path(root) / f"vocab-{key}.json"


def _to_json(v: Vocab) -> str:
    def plain(x: object) -> object:
        return {k: plain(a) for k, a in x.items()} if isinstance(x, dict) else list(x)

    return json.dumps({f.name: plain(getattr(v, f.name)) for f in fields(Vocab)})


def _from_json(text: str) -> Vocab:
    def strings(x: object) -> np.ndarray:
        if not (isinstance(x, list) and all(isinstance(v, str) for v in x)):
            raise ValueError("not a list of strings")
        return np.array(x, dtype=object)

    def arrays(x: object) -> object:
        return {k: strings(a) for k, a in x.items()} if isinstance(x, dict) else strings(x)

    d = json.loads(text)
    return Vocab(**{f.name: arrays(d[f.name]) for f in fields(Vocab)})


@lru_cache(maxsize=4)
def build_vocab(seed: int, size: int = 1500, n_skills: int = 400) -> Vocab:
    """Every vocabulary for a seed: from the disk cache, else built (and saved there); cached
    per process too."""
    try:
        path = cache_file(seed, size, n_skills)
    except RuntimeError:  # no home directory to find (Path.home() without HOME or passwd)
        path = None
    if path is not None:
        try:
            return _from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing, unreadable or torn: built again below
    vocab = _build_vocab(seed, size, n_skills)
    if path is not None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:  # written whole or not at all (another process may be writing the same file)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(_to_json(vocab))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: the vocabulary is still right, only not kept
        finally:
            tmp.unlink(missing_ok=True)
    return vocab


def _build_vocab(seed: int, size: int, n_skills: int) -> Vocab:
    """Build every vocabulary for a seed with Faker (2–4 s)."""
    first, last, streets, cities = {}, {}, {}, {}
    for i, loc in enumerate(sorted(set(REGION_LOCALES.values()))):
        fk = Faker(loc)
        fk.seed_instance(seed * 1000 + i)
        first[loc] = _unique(fk.first_name, size)
        last[loc] = _unique(fk.last_name, size)
        streets[loc] = _unique(fk.street_name, size // 2)
        cities[loc] = _unique(fk.city, size // 4)
    en = Faker("en_US")
    en.seed_instance(seed)

    def ascii_names(gen) -> np.ndarray:
        return np.array([n.lower().replace("'", "").replace(" ", "") for n in
                         _unique(gen, size)], dtype=object)

    def title() -> str:
        return " ".join(en.words(nb=en.random_int(1, 3))).title()

    kinds = ("Trivia", "Radio", "Facts", "Helper", "Sounds", "Workout", "Recipes", "Stories",
             "Quiz", "Guide", "Meditation")

    def skill() -> str:
        return f"{en.word().title()} {en.random_element(kinds)}"

    return Vocab(
        first_names=first, last_names=last, streets=streets, cities=cities,
        ascii_first=ascii_names(en.first_name), ascii_last=ascii_names(en.last_name),
        songs=_unique(title, size), artists=_unique(en.name, size // 2),
        contacts=np.array([f"{en.first_name()} {en.last_name()}" for _ in range(size)],
                          dtype=object),
        skills=_unique(skill, n_skills),
        items=np.array(ITEMS, dtype=object), rooms=np.array(ROOMS, dtype=object),
        topics=np.array(TOPICS, dtype=object),
    )
