"""Counter-based randomness: every random value is a pure function of (seed, key, field).

Because no value depends on how rows are grouped into chunks, the lake's content is identical
whatever the number of workers, the layout or the chunk size. All functions are vectorized over
numpy uint64 arrays; integer overflow wraps by design (numpy warns nowhere for array ops).
"""

from __future__ import annotations

import zlib

import numpy as np

U64 = np.uint64
MASK63 = U64((1 << 63) - 1)
_GOLDEN = U64(0x9E3779B97F4A7C15)
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)


def salt(seed: int, name: str) -> np.uint64:
    """A 64-bit salt for a named stream (a column, a decision) under a seed."""
    word = ((seed & 0xFFFFFFFF) << 32) ^ zlib.crc32(name.encode())
    return mix64(np.array([word], dtype=U64))[0]


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijection on uint64 with good avalanche."""
    z = x + _GOLDEN
    z = (z ^ (z >> U64(30))) * _M1
    z = (z ^ (z >> U64(27))) * _M2
    return z ^ (z >> U64(31))


def hash64(keys: np.ndarray, stream: np.uint64) -> np.ndarray:
    """Independent 64-bit random words for each key in a named stream."""
    return mix64(keys.astype(U64, copy=False) ^ stream)


def uniform(keys: np.ndarray, stream: np.uint64) -> np.ndarray:
    """Uniform floats in [0, 1) for each key."""
    return (hash64(keys, stream) >> U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def below(keys: np.ndarray, stream: np.uint64, n: int | np.ndarray) -> np.ndarray:
    """Uniform integers in [0, n) for each key (n scalar or per-key array)."""
    return (uniform(keys, stream) * n).astype(np.int64)


def choice(keys: np.ndarray, stream: np.uint64, cumulative: np.ndarray) -> np.ndarray:
    """Weighted choice: index i with probability cumulative[i] - cumulative[i-1]."""
    return np.searchsorted(cumulative, uniform(keys, stream), side="right").astype(np.int64)


def scramble63(keys: np.ndarray, stream: np.uint64) -> np.ndarray:
    """A keyed bijection on [0, 2^63): distinct keys give distinct, random-looking ids."""
    x = (keys.astype(U64, copy=False) + stream) & MASK63
    x = (x * _M1) & MASK63
    x ^= x >> U64(29)
    x = (x * _M2) & MASK63
    x ^= x >> U64(32)
    return x.astype(np.int64)


def poisson(keys: np.ndarray, stream: np.uint64, lam: np.ndarray) -> np.ndarray:
    """Poisson counts by inverse CDF (normal approximation for large means).

    The loop runs over count values, never over rows: each pass touches only the keys whose
    count is still undecided, so the total work is proportional to the sum of the counts.
    """
    u = uniform(keys, stream)
    out = np.zeros(len(keys), dtype=np.int64)
    big = lam > 40.0
    if big.any():
        # Wilson-Hilferty-free normal approximation; sqrt(2)*erfinv(2u-1) via a rational fit.
        z = _norm_ppf(u[big])
        out[big] = np.maximum(0, np.rint(lam[big] + np.sqrt(lam[big]) * z)).astype(np.int64)
    idx = np.flatnonzero(~big)
    lam_s, u_s = lam[idx], u[idx]
    p = np.exp(-lam_s)
    cdf = p.copy()
    k = 0
    while idx.size:
        undecided = u_s > cdf
        idx, lam_s, u_s, p, cdf = (a[undecided] for a in (idx, lam_s, u_s, p, cdf))
        k += 1
        out[idx] = k
        p = p * lam_s / k
        cdf = cdf + p
        if k > 200:  # lam <= 40: the tail beyond 200 has probability far below 1e-50
            break
    return out


def _norm_ppf(u: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's approximation, |error| < 1.2e-9)."""
    a = [-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00]
    b = [-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00]
    u = np.clip(u, 1e-12, 1 - 1e-12)
    out = np.empty_like(u)
    lo, hi = u < 0.02425, u > 1 - 0.02425
    mid = ~(lo | hi)
    q = u[mid] - 0.5
    r = q * q
    out[mid] = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    for mask, sign in ((lo, 1.0), (hi, -1.0)):
        qq = np.sqrt(-2 * np.log(u[mask] if sign > 0 else 1 - u[mask]))
        out[mask] = sign * (((((c[0] * qq + c[1]) * qq + c[2]) * qq + c[3]) * qq + c[4]) * qq
                            + c[5]) / ((((d[0] * qq + d[1]) * qq + d[2]) * qq + d[3]) * qq + 1)
    return out
