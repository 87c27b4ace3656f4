"""Random numbers from hashes: every draw is ``xxhash64(seed, domain, [ds,] id, salt)`` mapped to (0, 1), so
the same (seed, ds, config) gives the same rows however Spark partitions the work."""
from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# ---------------------------------------------------------------------------------------------
# Random numbers from hashes
# ---------------------------------------------------------------------------------------------
_INV_2_53 = 1.0 / float(2**53)


_TWO_PI = 2.0 * math.pi


class _Stream:
    """Independent draws keyed by one 64-bit hash column; ``salt`` names the draw."""

    def __init__(self, key: str):
        self.key = F.col(key)

    def uniform(self, salt: int) -> Column:
        # top 53 bits -> (0, 1), never 0 or 1 (Box-Muller takes a log)
        h = F.xxhash64(self.key, F.lit(salt))
        return (F.shiftrightunsigned(h, 11).cast("double") + 0.5) * _INV_2_53

    def normals(self, salt: int) -> tuple[Column, Column]:
        """Two independent N(0, 1) by Box-Muller on the uniforms ``salt`` and ``salt + 1``."""
        radius = F.sqrt(F.log(self.uniform(salt)) * -2.0)
        angle = self.uniform(salt + 1) * _TWO_PI
        return radius * F.cos(angle), radius * F.sin(angle)

    def power(self, salt: int, exponent: float) -> Column:
        """u ** exponent for a uniform u (skews draws towards 0: popular ids first). exp(log) is several
        times faster than Spark's pow (StrictMath.pow)."""
        return F.exp(F.log(self.uniform(salt)) * float(exponent))

    def exponential(self, salt: int, mean: float) -> Column:
        return -F.log(self.uniform(salt)) * mean


def _key(seed: int, domain: str, *cols: Column) -> Column:
    return F.xxhash64(F.lit(seed).cast("long"), F.lit(domain), *cols)


def _sigmoid(x: Column) -> Column:
    return F.lit(1.0) / (F.exp(-x) + 1.0)


def _normal_cdf(x: Column) -> Column:
    """Phi(x) through erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7); Spark has no erf."""
    z = F.abs(x) / math.sqrt(2.0)
    t = F.lit(1.0) / (z * 0.3275911 + 1.0)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = F.lit(1.0) - poly * F.exp(-z * z)
    return F.when(x >= 0, (erf + 1.0) * 0.5).otherwise((F.lit(1.0) - erf) * 0.5)


def _categorical(u: Column, weights: list[Column]) -> Column:
    """Index in [0, len(weights)) drawn with probabilities proportional to ``weights`` (>= 0)."""
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    target = u * total
    index = F.lit(0)
    running = None
    for w in weights[:-1]:
        running = w if running is None else running + w
        index = index + F.when(target >= running, 1).otherwise(0)
    return index


def _label(prefix: str, index: Column, size: int) -> Column:
    """``prefix`` + zero-padded ``index + 1`` from a literal array (format_string is ~50x slower)."""
    width = len(str(size))
    return F.element_at(F.array(*[F.lit(f"{prefix}{i + 1:0{width}d}") for i in range(size)]), index + 1)


def _stage_break(df: DataFrame, num_partitions: int) -> DataFrame:
    """End the whole-stage-code-generation stage here (Coalesce has no code generation; with the
    partition count unchanged it moves no data). A chain of projections otherwise compiles into one
    Java method far beyond HotSpot's 8,000-byte limit for JIT compilation, and runs interpreted:
    3-5x slower."""
    return df.coalesce(num_partitions)


def _pick(index: Column, values: list) -> Column:
    out = F.lit(values[-1])
    for i in range(len(values) - 2, -1, -1):
        out = F.when(index == i, F.lit(values[i])).otherwise(out)
    return out


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
