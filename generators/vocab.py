"""Vocabularies built once per seed with Faker — never a Faker call per row.

Rows pick from these lists by index; the lists are numpy object arrays so a gather is one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=4)
def build_vocab(seed: int, size: int = 1500, n_skills: int = 400) -> Vocab:
    """Build every vocabulary for a seed. Takes about a second; cached per process."""
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
