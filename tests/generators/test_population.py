"""Customer PII follows each locale's conventions: name order, address order, country codes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from generators import dims
from generators.config import LakeConfig
from generators.population import Population
from generators.vocab import COUNTRY, DIAL, EMAIL_DOMAINS, LANGUAGE, REGION_LOCALES, build_vocab


@pytest.fixture(scope="module")
def pop() -> Population:
    # regions reordered and a subset: a customer's home index must map to its own locale
    return Population(LakeConfig(sf=0.01, seed=3, regions=(
        "ap-northeast-1", "eu-central-1", "us-east-1", "sa-east-1", "eu-west-1")), build_vocab(3))


def _splits(text: str, left: set[str], right: set[str]) -> bool:
    """Whether text is `a + " " + b` for some a in left and b in right (names may hold spaces)."""
    return any(text[:i] in left and text[i + 1:] in right
               for i in range(len(text)) if text[i] == " ")


def test_names_addresses_and_codes_follow_the_home_locale(pop: Population) -> None:
    cid = np.arange(1, 4001, dtype=np.int64)
    home = pop.home(cid)
    pii = pop.pii(cid).to_dicts()
    v = pop.vocab
    seen = set()
    for row, h in zip(pii, home, strict=True):
        loc = REGION_LOCALES[pop.cfg.regions[h]]
        seen.add(loc)
        first, last = set(v.first_names[loc]), set(v.last_names[loc])
        if loc == "ja_JP":  # family name first
            assert _splits(row["full_name"], last, first), row
        else:
            assert _splits(row["full_name"], first, last), row
        street = (re.fullmatch(r"(.+) (\d{1,3})", row["street_address"])
                  if loc in ("de_DE", "pt_BR")
                  else re.fullmatch(r"(\d{1,3}) (.+)", row["street_address"]))
        assert street is not None, row
        name = street.group(1) if loc in ("de_DE", "pt_BR") else street.group(2)
        assert name in set(v.streets[loc]), row
        assert row["city"] in set(v.cities[loc]), row
        assert (row["country"], row["language"]) == (COUNTRY[loc], LANGUAGE[loc])
        assert row["phone"].startswith(DIAL[loc] + " ")
        assert row["email"].split("@")[1] in EMAIL_DOMAINS
        assert str(row["customer_id"]) + "@" in row["email"]
    assert seen == {"ja_JP", "de_DE", "en_US", "pt_BR", "en_GB"}


def test_a_personal_device_name_carries_the_first_word_of_the_owner_name(
        pop: Population) -> None:
    cid = np.arange(1, 2001, dtype=np.int64)
    names = dict(zip(cid.tolist(), pop.pii(cid)["full_name"].to_list(), strict=True))
    dev = dims.devices(pop, cid).to_pydict()
    personal = [(c, n) for c, n in zip(dev["customer_id"], dev["device_name"], strict=True)
                if "'s " in n]
    assert len(personal) > 100
    for c, n in personal:
        assert n.split("'s ")[0] == names[c].split(" ")[0]
    rooms = {r.title() for r in pop.vocab.rooms}
    for n in dev["device_name"]:
        assert "'s " in n or any(n.startswith(r + " ") for r in rooms), n
