"""The simulator's random numbers are Spark SQL's xxhash64, bit for bit: the key of a row and each salted
draw, recomputed by Spark on the same ids, and the uniform both map it to."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from liftlake.lib.sim.streams import SPARK_SEED, Stream, hash_bytes, hash_int_over, hash_long, hash_longs, key

DS = "2026-11-20"


def _signed(h: np.ndarray) -> np.ndarray:
    return h.view(np.int64)


@pytest.mark.parametrize("seed,domain,ds", [(42, "exposure", DS), (7, "user", None), (-3, "user_day", "2026-11-21")])
def test_keys_and_draws_are_sparks_xxhash64(spark, seed, domain, ds):
    ids = np.array([0, 1, 2, 999, 123_456_789, 2**40 + 17, -5], dtype=np.int64)
    df = spark.createDataFrame([(int(i),) for i in ids], "id long")
    args = [F.lit(seed).cast("long"), F.lit(domain), *([F.lit(ds)] if ds else []), F.col("id")]
    df = df.select("id", F.xxhash64(*args).alias("k"))
    df = df.select("id", "k", *[F.xxhash64(F.col("k"), F.lit(salt)).alias(f"s{salt}") for salt in (1, 24, 91)],
                   ((F.shiftrightunsigned(F.xxhash64(F.col("k"), F.lit(24)), 11).cast("double") + 0.5)
                    * (1.0 / 2**53)).alias("u24"))
    rows = sorted(df.collect(), key=lambda r: list(ids).index(r["id"]))

    keys = key(seed, domain, ids, ds)
    assert _signed(keys).tolist() == [r["k"] for r in rows]
    for salt in (1, 24, 91):
        assert _signed(hash_int_over(salt, hash_longs(keys, SPARK_SEED))).tolist() == [r[f"s{salt}"] for r in rows]
    assert Stream(keys).uniform(24).tolist() == [r["u24"] for r in rows]


def test_strings_of_every_length_hash_as_spark_does(spark):
    # lengths on both sides of XXH64's 4-, 8- and 32-byte steps, and a multi-byte character
    texts = ["", "a", "abc", "abcd", "abcdefg", "abcdefgh", "2026-11-20", "x" * 31, "y" * 32, "z" * 77, "prix é"]
    got = spark.createDataFrame([(t,) for t in texts], "t string").select(
        "t", F.xxhash64(F.col("t")).alias("h")).collect()
    spark_hash = {r["t"]: r["h"] for r in got}
    for text in texts:
        ours = np.array([hash_bytes(text.encode(), SPARK_SEED)], dtype=np.uint64).view(np.int64)[0]
        assert ours == spark_hash[text], text
    assert np.array([hash_long(5, SPARK_SEED)], dtype=np.uint64).view(np.int64)[0] == \
        spark.range(1).select(F.xxhash64(F.lit(5).cast("long"))).first()[0]
