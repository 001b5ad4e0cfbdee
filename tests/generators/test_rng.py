"""Properties of the counter-based randomness the generator is built on."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from generators import rng


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 2**62), min_size=1, max_size=200,
                                            unique=True))
def test_scramble63_is_injective_and_in_range(seed: int, keys: list[int]) -> None:
    out = rng.scramble63(np.array(keys, dtype=np.uint64), rng.salt(seed, "x"))
    assert len(set(out.tolist())) == len(keys)
    assert (out >= 0).all()


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=300))
def test_values_depend_only_on_the_key(keys: list[int]) -> None:
    s = rng.salt(1, "u")
    k = np.array(keys, dtype=np.uint64)
    whole = rng.uniform(k, s)
    parts = np.concatenate([rng.uniform(k[i:i + 7], s) for i in range(0, len(k), 7)])
    assert (whole == parts).all()
    assert ((whole >= 0) & (whole < 1)).all()


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 120.0))
def test_poisson_mean_and_variance(lam: float) -> None:
    keys = np.arange(40_000, dtype=np.uint64)
    x = rng.poisson(keys, rng.salt(3, "p"), np.full(len(keys), lam))
    assert (x >= 0).all()
    assert abs(x.mean() - lam) < 0.05 * lam + 0.05
    assert abs(x.var() - lam) < 0.15 * lam + 0.1
