"""Random numbers from hashes: every draw is ``xxhash64(seed, domain, [ds,] id, salt)`` mapped to (0, 1), so
the same (seed, ds, config) gives the same rows however the work is split into chunks.

The hash is Spark's ``xxhash64`` SQL function, bit for bit (XXH64 with seed 42, each argument hashed
with the previous hash as its seed: a long as 8 bytes, an int as 4, a string as its UTF-8 bytes), in
vectorised numpy: a day's draws can be recomputed in Spark SQL, which tests/sim/test_streams.py does.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_MASK = (1 << 64) - 1
SPARK_SEED = 42      # the seed of Spark's xxhash64 SQL function
_INV_2_53 = 1.0 / float(2**53)
_TWO_PI = 2.0 * math.pi


# -- XXH64 of one value (Python ints, for the constant part of a key) --------------------------
def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _fmix(h: int) -> int:
    h = ((h ^ (h >> 33)) * _P2) & _MASK
    h = ((h ^ (h >> 29)) * _P3) & _MASK
    return h ^ (h >> 32)


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _MASK, 31) * _P1) & _MASK


def hash_long(value: int, seed: int) -> int:
    """XXH64 of the 8 bytes of a long (Spark's ``XXH64.hashLong``)."""
    h = (seed + _P5 + 8) & _MASK
    h ^= (_rotl((value * _P2) & _MASK, 31) * _P1) & _MASK
    return _fmix((_rotl(h, 27) * _P1 + _P4) & _MASK)


def hash_bytes(data: bytes, seed: int) -> int:
    """XXH64 of ``data`` (Spark's ``XXH64.hashUnsafeBytes``; the reference XXH64 on little-endian)."""
    n, offset = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed & _MASK, (seed - _P1) & _MASK]
        while offset <= n - 32:
            for i in range(4):
                v[i] = _round(v[i], int.from_bytes(data[offset + 8 * i:offset + 8 * i + 8], "little"))
            offset += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _MASK
        for lane in v:
            h = ((h ^ _round(0, lane)) * _P1 + _P4) & _MASK
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while offset + 8 <= n:
        h ^= _round(0, int.from_bytes(data[offset:offset + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _MASK
        offset += 8
    if offset + 4 <= n:
        h ^= (int.from_bytes(data[offset:offset + 4], "little") * _P1) & _MASK
        h = (_rotl(h, 23) * _P2 + _P3) & _MASK
        offset += 4
    while offset < n:
        h ^= (data[offset] * _P5) & _MASK
        h = (_rotl(h, 11) * _P1) & _MASK
        offset += 1
    return _fmix(h)


# -- the same over arrays (uint64 arithmetic wraps, as Java's long does) -----------------------
def _rotl_array(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix_array(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint64(33)
    h *= np.uint64(_P2)
    h ^= h >> np.uint64(29)
    h *= np.uint64(_P3)
    h ^= h >> np.uint64(32)
    return h


def hash_longs(values: np.ndarray, seed: int | np.ndarray) -> np.ndarray:
    """``hash_long`` of each of ``values`` (int64 or uint64), with one seed or one per value."""
    k = _rotl_array(values.astype(np.uint64) * np.uint64(_P2), 31)
    k *= np.uint64(_P1)
    if isinstance(seed, np.ndarray):
        h = seed + np.uint64((_P5 + 8) & _MASK)
    else:
        h = np.full(values.shape, (seed + _P5 + 8) & _MASK, dtype=np.uint64)
    h ^= k
    h = _rotl_array(h, 27)
    h *= np.uint64(_P1)
    h += np.uint64(_P4)
    return _fmix_array(h)


def hash_int_over(value: int, seeds: np.ndarray) -> np.ndarray:
    """XXH64 of the 4 bytes of the int ``value`` (Spark's ``XXH64.hashInt``), once per seed."""
    h = seeds + np.uint64((_P5 + 4) & _MASK)
    h ^= np.uint64(((value & 0xFFFFFFFF) * _P1) & _MASK)
    h = _rotl_array(h, 23)
    h *= np.uint64(_P2)
    h += np.uint64(_P3)
    return _fmix_array(h)


def key(seed: int, domain: str, ids: np.ndarray, ds: str | None = None) -> np.ndarray:
    """``xxhash64(CAST(seed AS BIGINT), domain, [ds,] id)`` of each id: the key of a row's draws."""
    h = hash_bytes(domain.encode(), hash_long(seed, SPARK_SEED))
    if ds is not None:
        h = hash_bytes(ds.encode(), h)
    return hash_longs(ids, h)


class Stream:
    """Independent draws keyed by one 64-bit hash per row; ``salt`` names the draw:
    ``xxhash64(key, salt)`` with the salt an int."""

    def __init__(self, keys: np.ndarray):
        self._key_hash = hash_longs(keys, SPARK_SEED)   # the first argument's part, shared by every salt

    def take(self, rows: np.ndarray) -> "Stream":
        """The stream of a subset of the rows (the same draws for them)."""
        out = Stream.__new__(Stream)
        out._key_hash = self._key_hash[rows]
        return out

    def uniform(self, salt: int) -> np.ndarray:
        # top 53 bits -> (0, 1), never 0 or 1 (Box-Muller takes a log)
        u = (hash_int_over(salt, self._key_hash) >> np.uint64(11)).astype(np.float64)
        u += 0.5
        u *= _INV_2_53
        return u

    def normals(self, salt: int) -> tuple[np.ndarray, np.ndarray]:
        """Two independent N(0, 1) by Box-Muller on the uniforms ``salt`` and ``salt + 1``."""
        radius = np.sqrt(np.log(self.uniform(salt)) * -2.0)
        angle = self.uniform(salt + 1) * _TWO_PI
        return radius * np.cos(angle), radius * np.sin(angle)

    def power(self, salt: int, exponent: float) -> np.ndarray:
        """u ** exponent for a uniform u (skews draws towards 0: popular ids first)."""
        return np.exp(np.log(self.uniform(salt)) * float(exponent))

    def exponential(self, salt: int, mean: float) -> np.ndarray:
        return -np.log(self.uniform(salt)) * mean


# -- shared transforms -----------------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (np.exp(-x) + 1.0)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) through erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (z * 0.3275911 + 1.0)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return np.where(x >= 0, (erf + 1.0) * 0.5, (1.0 - erf) * 0.5)


def categorical(u: np.ndarray, weights: list) -> np.ndarray:
    """Index in [0, len(weights)) drawn with probabilities proportional to ``weights`` (arrays or
    scalars, >= 0): how many of the running sums ``u * total`` reaches."""
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    target = u * total
    index = np.zeros(np.shape(u), dtype=np.int32)
    running = None
    for w in weights[:-1]:
        running = w if running is None else running + w
        index += target >= running
    return index


def round_half_up(x: np.ndarray, digits: int) -> np.ndarray:
    """``x`` rounded to ``digits`` decimals, halves away from zero (SQL's ROUND)."""
    scale = 10.0 ** digits
    return np.copysign(np.floor(np.abs(x) * scale + 0.5), x) / scale


def floor_int(x: np.ndarray, dtype=np.int64) -> np.ndarray:
    return np.floor(x).astype(dtype)


def labels(prefix: str, index: np.ndarray, size: int) -> pa.Array:
    """``prefix`` + zero-padded ``index + 1``, taken from the ``size`` labels: no Python string per row."""
    width = len(str(size))
    return pa.array([f"{prefix}{i + 1:0{width}d}" for i in range(size)]).take(pa.array(index))


def pick(values: tuple | list, index: np.ndarray) -> pa.Array:
    """``values[index]`` as an Arrow array (strings)."""
    return pa.array(list(values)).take(pa.array(index))


# Salts. One namespace per key domain; normals take two consecutive salts.
class _U:  # user domain (seed, user_id)
    AGE_WEALTH, INTENT_PRICE, TASTE12, TASTE3_ACT, INCOME_TENURE, ORDERS = 10, 12, 14, 16, 18, 20
    GENDER, CITY, DEVICE, SEGMENT = 30, 31, 32, 33


class _I:  # item domain (seed, item_id)
    CATEGORY, BRAND = 1, 2
    PRICE_QUALITY, ATTRACT_TASTE1, TASTE23 = 10, 12, 14


class _E:  # exposure domain (seed, ds, exposure n)
    USER, TYPE, ITEM, POSITION, DEVICE_SWITCH, DEVICE, TIME = 1, 2, 3, 4, 5, 6, 7
    SHOCKS = 10
    CLICK, CONVERT, CLICK_DELAY, CONVERT_DELAY, VALUE = 20, 21, 22, 23, 24
    BAD, BAD_KIND = 40, 41


class _D:  # user-day domain (seed, ds, user_id)
    COUPON_RCT, COUPON_TREAT, COUPON_VALUE, COUPON_OUTCOME = 1, 2, 3, 4
    VALUE_JITTER = 10  # normal pair
    TREAT_RCT, TREAT_ARM = 20, 21
    RESPONSES = 30     # normal pairs from here on
    BAD, BAD_KIND, BAD_VARIANT = 90, 91, 92
