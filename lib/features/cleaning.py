"""Cleaning rules: each raw table is tagged once with the first rule a row breaks; good rows go on to the
feature tables and the rest to ops.quarantine with the rule as the reason."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

QUARANTINE_SCHEMA = T.StructType([
    T.StructField("source_table", T.StringType(), False),
    T.StructField("rule", T.StringType(), False),
    T.StructField("row_key", T.StringType(), True),
    T.StructField("row_json", T.StringType(), True),
    T.StructField("job", T.StringType(), False),
    T.StructField("ds", T.StringType(), False),
])


def _day_bounds(ds: str) -> tuple[Column, Column]:
    start = dt.datetime.fromisoformat(ds)
    return (F.lit(start).cast("timestamp"), F.lit(start + dt.timedelta(days=1)).cast("timestamp"))


@dataclass
class Cleaned:
    good: DataFrame
    rejected: DataFrame
    tagged: DataFrame | None = None  # the cached tagged rows both derive from (split_tagged(persist=True))


def tag_rules(df: DataFrame, rule: Column, unique_by: str, order_by: Sequence[str], duplicate_rule: str) -> DataFrame:
    """Tag each row with the first rule it breaks (``_rule``, null when none); of the rows that
    break none and share ``unique_by``, the first by ``order_by`` is kept and the others are tagged
    ``duplicate_rule`` (a re-sent log line never counts twice). One shuffle for both, by ``unique_by``
    alone (the rows that break no rule sort first in each key), so that a join on the key after it
    needs no other."""
    tagged = df.withColumn("_rule", rule)
    first = F.row_number().over(Window.partitionBy(unique_by)
                                .orderBy(F.col("_rule").isNotNull(), *order_by))
    return tagged.withColumn("_rule", F.when(F.col("_rule").isNull() & (first > 1), F.lit(duplicate_rule))
                             .otherwise(F.col("_rule")))


def persist_uncompressed(df: DataFrame) -> DataFrame:
    """``df`` cached (memory, then disk) in Spark's columnar batches without their compression: the
    tagged tables are read back a few times within one job, and compressing the exposures' batches
    cost more CPU than it saved (about 15 % of the job at 1M exposures a day, measured on 2 cores).
    The setting is read when the cache is declared, so it is set for the call and put back."""
    conf = df.sparkSession.conf
    key = "spark.sql.inMemoryColumnarStorage.compressed"
    before = conf.get(key, None)
    conf.set(key, "false")
    try:
        return df.persist(StorageLevel.MEMORY_AND_DISK)
    finally:
        if before is None:
            conf.unset(key)
        else:
            conf.set(key, before)


def split_tagged(tagged: DataFrame, table: str, key: str, job: str, ds: str, helper_cols: Sequence[str] = (),
                 raw_cols: Sequence[str] | None = None, persist: bool = False) -> Cleaned:
    """Rows without a rule, and the quarantine rows of the others (the raw row as JSON: ``raw_cols``,
    by default every column but the helpers). ``persist``: the tagged rows are cached (``Cleaned.tagged``;
    the caller unpersists them), so that the good rows, the quarantine and every later step that reads
    either derive from one tagging pass instead of re-running the joins and the de-duplication."""
    tagged = tagged.drop(*helper_cols)
    if persist:
        tagged = persist_uncompressed(tagged)
    good = tagged.where(F.col("_rule").isNull()).drop("_rule")
    bad = tagged.where(F.col("_rule").isNotNull())
    payload = list(raw_cols) if raw_cols is not None else [c for c in bad.columns if c != "_rule"]
    rejected = bad.select(
        F.lit(table).alias("source_table"), F.col("_rule").alias("rule"),
        F.col(key).cast("string").alias("row_key"),
        F.to_json(F.struct(*[F.col(c) for c in payload])).alias("row_json"),
        F.lit(job).alias("job"), F.lit(ds).alias("ds"))
    return Cleaned(good, rejected, tagged if persist else None)


def _not_finite(c: Column) -> Column:
    return F.isnan(c) | c.isin(float("inf"), float("-inf"))


def _attribute_rules(df: DataFrame, key: str, max_id_chars: int) -> Column:
    """An attribute row (raw.users, raw.items) needs its id and finite numbers (null is allowed: it
    is the missing bucket)."""
    numeric = [f.name for f in df.schema.fields if isinstance(f.dataType, (T.DoubleType, T.FloatType))]
    non_finite = F.lit(False)
    for c in numeric:
        non_finite = non_finite | _not_finite(F.col(c))
    text = [f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType) and f.name != "ds"]
    oversized = F.lit(False)
    for c in text:
        oversized = oversized | (F.length(F.col(c)) > max_id_chars)
    return (F.when(F.col(key).isNull(), "null_id")
            .when(non_finite, "non_finite_attribute")
            .when(oversized, "oversized_value"))


def clean_attributes(rows: DataFrame, table: str, key: str, ds: str, job: str, max_id_chars: int,
                     persist: bool = False) -> Cleaned:
    """raw.users / raw.items: one row per id a day; the rest is quarantined."""
    tagged = tag_rules(rows, _attribute_rules(rows, key, max_id_chars), key, [key], f"duplicate_{key}")
    return split_tagged(tagged, table, key, job, ds, persist=persist)


def exposure_rules(ds: str, max_id_chars: int) -> Column:
    """Null ids, ids that join no user or item of the day, oversized ids, timestamps outside the day,
    an hour that is not the timestamp's, negative positions. Reads the ``_user_known`` /
    ``_item_known`` flags of ``with_known_ids``."""
    lo, hi = _day_bounds(ds)
    return (F.when(F.col("exposure_id").isNull() | F.col("user_id").isNull() | F.col("item_id").isNull(), "null_id")
            .when(F.length(F.col("exposure_id")) > max_id_chars, "oversized_id")
            .when(F.col("_user_known").isNull(), "unknown_user_id")
            .when(F.col("_item_known").isNull(), "unknown_item_id")
            .when(F.col("ts").isNull() | (F.col("ts") < lo) | (F.col("ts") >= hi), "ts_outside_day")
            .when(F.col("hour").isNotNull() & (F.col("hour") != F.hour(F.col("ts"))), "hour_contradicts_ts")
            .when(F.col("position") < 0, "negative_position"))


def with_known_ids(exposures: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Exposures with flags (non-null when known) for their user and item among the day's ``users``
    / ``items``; left joins, so that an unknown id stays to be quarantined. Only the ids are joined:
    the exposures are shuffled next (de-duplication) and cached, and the users' and items' encoded
    fields are joined to the good rows afterwards, which halved the shuffle (106 MiB of rows at 1M
    exposures, 205 MiB with the fields) and narrowed the cache."""
    return (exposures.drop("ds")
            .join(users.select("user_id", F.lit(True).alias("_user_known")), "user_id", "left")
            .join(F.broadcast(items.select("item_id", F.lit(True).alias("_item_known"))), "item_id", "left"))


def clean_exposures(exposures: DataFrame, users: DataFrame, items: DataFrame, ds: str, job: str,
                    max_id_chars: int, persist: bool = False) -> Cleaned:
    """``users`` / ``items``: the day's clean attribute rows (one per id). Good and quarantined rows
    are the raw exposure's columns."""
    tagged = tag_rules(with_known_ids(exposures, users, items), exposure_rules(ds, max_id_chars), "exposure_id",
                       ["ts", "user_id"], "duplicate_exposure_id")
    return split_tagged(tagged, "raw.exposures", "exposure_id", job, ds, helper_cols=["_user_known", "_item_known"],
                        raw_cols=[c for c in exposures.columns if c != "ds"], persist=persist)


def _clean_follow_up(events: DataFrame, earlier: DataFrame, table: str, missing_rule: str, before_rule: str,
                     duplicate_rule: str, ds: str, job: str, persist: bool = False) -> Cleaned:
    """A funnel event (click, conversion) needs the earlier event on its exposure and a timestamp
    not before it; one per exposure."""
    # The earlier events that have a follow-up (a semi join, which AQE broadcasts while the follow-ups'
    # ids are small: a day's exposures streamed past the clicks' ids instead of shuffled to meet
    # them); the left join then joins two tables of the follow-ups' size.
    followed = (earlier.select("exposure_id", F.col("ts").alias("_earlier_ts"))
                .join(events.select("exposure_id").distinct(), "exposure_id", "left_semi"))
    joined = events.join(followed, "exposure_id", "left")
    rule = (F.when(F.col("exposure_id").isNull(), "null_id")
            .when(F.col("_earlier_ts").isNull(), missing_rule)
            .when(F.col("ts").isNull() | (F.col("ts") < F.col("_earlier_ts")), before_rule))
    tagged = tag_rules(joined, rule, "exposure_id", ["ts"], duplicate_rule)
    return split_tagged(tagged, table, "exposure_id", job, ds, helper_cols=["_earlier_ts"], persist=persist)


def clean_clicks(clicks: DataFrame, exposures: DataFrame, ds: str, job: str, persist: bool = False) -> Cleaned:
    """A click needs its exposure and a timestamp not before it."""
    return _clean_follow_up(clicks, exposures, "raw.clicks", "click_without_exposure", "click_before_exposure",
                            "duplicate_click", ds, job, persist)


def clean_conversions(conversions: DataFrame, clicks: DataFrame, ds: str, job: str,
                      persist: bool = False) -> Cleaned:
    """A conversion needs a click on its exposure and comes after it (the conversion funnel)."""
    return _clean_follow_up(conversions, clicks, "raw.conversions", "conversion_without_click",
                            "conversion_before_click", "duplicate_conversion", ds, job, persist)


def clean_user_day(treatments: DataFrame, responses: DataFrame, users: DataFrame, num_treatments: int,
                   num_responses: int, ds: str, job: str, persist: bool = False) -> Cleaned:
    """One row per user-day from treatments + responses; rows that break a rule are rejected.
    ``users``: the day's clean raw.users rows."""
    resp_cols = [f"response_{r}" for r in range(1, num_responses + 1)]
    share_cols = [f"value_share_{r}" for r in range(1, num_responses + 1)]
    joined = (treatments.join(responses.drop("ds"), "user_id", "left")
              .join(users.select("user_id", F.lit(True).alias("_user_known")), "user_id", "left"))
    bad_response = F.lit(False)
    for c in resp_cols:
        bad_response = bad_response | F.col(c).isNull() | _not_finite(F.col(c)) | (F.col(c) < 0)
    bad_share = F.lit(False)
    for c in share_cols:
        bad_share = bad_share | F.col(c).isNull() | F.isnan(F.col(c)) | (F.col(c) < 0) | (F.col(c) > 1)
    value = F.col("coupon_value")
    rule = (F.when(F.col("user_id").isNull(), "null_id")
            .when(F.col("_user_known").isNull(), "unknown_user_id")
            .when(F.col("coupon_outcome").isNull(), "missing_response_row")
            .when(~F.col("coupon_treated").isin(0, 1), "coupon_treated_not_binary")
            .when((F.col("coupon_treated") == 1) & (value.isNull() | _not_finite(value) | (value <= 0)),
                  "bad_coupon_value_on_treated_row")
            .when((F.col("coupon_treated") == 0) & (value != 0), "coupon_value_on_untreated_row")
            .when(F.col("treatment_id").isNull() | (F.col("treatment_id") < 0)
                  | (F.col("treatment_id") > num_treatments), "unknown_treatment_id")
            .when(bad_response, "response_nan_or_negative")
            .when(bad_share, "value_share_outside_0_1"))
    tagged = tag_rules(joined, rule, "user_id", ["coupon_value", "treatment_id"], "duplicate_user_day")
    return split_tagged(tagged, "raw.treatments", "user_id", job, ds, helper_cols=["_user_known"], persist=persist)
