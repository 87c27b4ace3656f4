"""The feature job as it was before issue 20 (commit 456c622), frozen: the reference the equivalence
test compares the current lib/features with. Do not optimise this file; it is the "before"."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from liftlake.lib.features.raw_logs import read_raw_day
from liftlake.lib.features.spec import EXPOSURE_FIELDS, HASH_BUCKETS, USER_FIELDS, FeatureSpec, FieldSpec


# -- lib/features/cleaning.py ----------------------------------------------------------------------
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


def tag_rules(df: DataFrame, rule: Column, unique_by: str, order_by: Sequence[str], duplicate_rule: str) -> DataFrame:
    """Tag each row with the first rule it breaks (``_rule``, null when none); of the rows that
    break none and share ``unique_by``, the first by ``order_by`` is kept and the others are tagged
    ``duplicate_rule`` (a re-sent log line never counts twice). One shuffle for both."""
    tagged = df.withColumn("_rule", rule)
    first = F.row_number().over(Window.partitionBy(unique_by, F.col("_rule").isNull()).orderBy(*order_by))
    return tagged.withColumn("_rule", F.when(F.col("_rule").isNull() & (first > 1), F.lit(duplicate_rule))
                             .otherwise(F.col("_rule")))


def split_tagged(tagged: DataFrame, table: str, key: str, job: str, ds: str, helper_cols: Sequence[str] = (),
                 raw_cols: Sequence[str] | None = None) -> Cleaned:
    """Rows without a rule, and the quarantine rows of the others (the raw row as JSON: ``raw_cols``,
    by default every column but the helpers)."""
    good = tagged.where(F.col("_rule").isNull()).drop("_rule", *helper_cols)
    bad = tagged.where(F.col("_rule").isNotNull()).drop(*helper_cols)
    payload = list(raw_cols) if raw_cols is not None else [c for c in bad.columns if c != "_rule"]
    rejected = bad.select(
        F.lit(table).alias("source_table"), F.col("_rule").alias("rule"),
        F.col(key).cast("string").alias("row_key"),
        F.to_json(F.struct(*[F.col(c) for c in payload])).alias("row_json"),
        F.lit(job).alias("job"), F.lit(ds).alias("ds"))
    return Cleaned(good, rejected)


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


def clean_attributes(rows: DataFrame, table: str, key: str, ds: str, job: str, max_id_chars: int) -> Cleaned:
    """raw.users / raw.items: one row per id a day; the rest is quarantined."""
    tagged = tag_rules(rows, _attribute_rules(rows, key, max_id_chars), key, [key], f"duplicate_{key}")
    return split_tagged(tagged, table, key, job, ds)


def exposure_rules(ds: str, max_id_chars: int) -> Column:
    """Null ids, ids that join no user or item of the day, oversized ids, timestamps outside the day,
    an hour that is not the timestamp's, negative positions. Reads the ``_user_known`` /
    ``_item_known`` flags of ``with_known_flags``."""
    lo, hi = _day_bounds(ds)
    return (F.when(F.col("exposure_id").isNull() | F.col("user_id").isNull() | F.col("item_id").isNull(), "null_id")
            .when(F.length(F.col("exposure_id")) > max_id_chars, "oversized_id")
            .when(F.col("_user_known").isNull(), "unknown_user_id")
            .when(F.col("_item_known").isNull(), "unknown_item_id")
            .when(F.col("ts").isNull() | (F.col("ts") < lo) | (F.col("ts") >= hi), "ts_outside_day")
            .when(F.col("hour").isNotNull() & (F.col("hour") != F.hour(F.col("ts"))), "hour_contradicts_ts")
            .when(F.col("position") < 0, "negative_position"))


def with_attributes(exposures: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Exposures with the day's user and item attributes, and flags (non-null when known) for both;
    left joins, so that an unknown id stays to be quarantined; the item table is small and broadcast."""
    return (exposures.drop("ds")
            .join(users.drop("ds").withColumn("_user_known", F.lit(True)), "user_id", "left")
            .join(F.broadcast(items.drop("ds").withColumn("_item_known", F.lit(True))), "item_id", "left"))


def clean_exposures(exposures: DataFrame, users: DataFrame, items: DataFrame, ds: str, job: str,
                    max_id_chars: int) -> Cleaned:
    """``users`` / ``items``: the day's clean attribute rows (one per id). The good rows carry their
    user's and item's attributes (joined once, here); quarantined rows keep the raw exposure."""
    joined = with_attributes(exposures, users, items)
    tagged = tag_rules(joined, exposure_rules(ds, max_id_chars), "exposure_id", ["ts", "user_id"],
                       "duplicate_exposure_id")
    return split_tagged(tagged, "raw.exposures", "exposure_id", job, ds, helper_cols=["_user_known", "_item_known"],
                        raw_cols=[c for c in exposures.columns if c != "ds"])


def _clean_follow_up(events: DataFrame, earlier: DataFrame, table: str, missing_rule: str, before_rule: str,
                     duplicate_rule: str, ds: str, job: str) -> Cleaned:
    """A funnel event (click, conversion) needs the earlier event on its exposure and a timestamp
    not before it; one per exposure."""
    joined = events.join(earlier.select("exposure_id", F.col("ts").alias("_earlier_ts")), "exposure_id", "left")
    rule = (F.when(F.col("exposure_id").isNull(), "null_id")
            .when(F.col("_earlier_ts").isNull(), missing_rule)
            .when(F.col("ts").isNull() | (F.col("ts") < F.col("_earlier_ts")), before_rule))
    tagged = tag_rules(joined, rule, "exposure_id", ["ts"], duplicate_rule)
    return split_tagged(tagged, table, "exposure_id", job, ds, helper_cols=["_earlier_ts"])


def clean_clicks(clicks: DataFrame, exposures: DataFrame, ds: str, job: str) -> Cleaned:
    """A click needs its exposure and a timestamp not before it."""
    return _clean_follow_up(clicks, exposures, "raw.clicks", "click_without_exposure", "click_before_exposure",
                            "duplicate_click", ds, job)


def clean_conversions(conversions: DataFrame, clicks: DataFrame, ds: str, job: str) -> Cleaned:
    """A conversion needs a click on its exposure and comes after it (the conversion funnel)."""
    return _clean_follow_up(conversions, clicks, "raw.conversions", "conversion_without_click",
                            "conversion_before_click", "duplicate_conversion", ds, job)


def clean_user_day(treatments: DataFrame, responses: DataFrame, users: DataFrame, num_treatments: int,
                   num_responses: int, ds: str, job: str) -> Cleaned:
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
    return split_tagged(tagged, "raw.treatments", "user_id", job, ds, helper_cols=["_user_known"])


# -- lib/features/spec.py ----------------------------------------------------------------------
def fit_spec(exposure_rows: DataFrame, days: Sequence[str], min_count: int, max_vocab: int,
             numeric_buckets: int) -> FeatureSpec:
    """Fit vocabularies and quantile boundaries on the (cleaned, joined) exposure rows of ``days``.

    Only aggregates reach the driver: at most ``max_vocab`` values per string field and
    ``numeric_buckets`` boundaries per numeric field.
    """
    fields: dict[str, FieldSpec] = {}
    for name, source, kind in EXPOSURE_FIELDS:
        if kind == "hash":
            fields[name] = FieldSpec(name, kind, HASH_BUCKETS[name] + 1)
        elif kind == "vocab":
            top = (exposure_rows.where(F.col(source).isNotNull())
                   .groupBy(F.col(source).cast("string").alias("v")).count()
                   .where(F.col("count") >= min_count)
                   .orderBy(F.desc("count"), F.asc("v")).limit(max_vocab).collect())
            vocab = {row["v"]: i + 1 for i, row in enumerate(top)}
            fields[name] = FieldSpec(name, kind, len(vocab) + 1, vocab=vocab)
        else:
            probs = [i / numeric_buckets for i in range(1, numeric_buckets)]
            value = F.col(source).cast("double")
            clean = exposure_rows.where(value.isNotNull() & ~F.isnan(value)
                                        & ~value.isin(float("inf"), float("-inf")))
            qs = clean.approxQuantile(source, probs, 0.001) if probs else []
            boundaries = sorted(set(float(q) for q in qs))
            fields[name] = FieldSpec(name, kind, len(boundaries) + 2, boundaries=boundaries)
    body = json.dumps({k: asdict(v) for k, v in fields.items()}, sort_keys=True)
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    return FeatureSpec(version=version, fitted_on=list(days), fields=fields,
                       exposure_fields=[n for n, _, _ in EXPOSURE_FIELDS],
                       user_fields=[n for n, _, _ in USER_FIELDS])


def encode_column(spec: FieldSpec, source: Column) -> Column:
    """One field's index in [0, size): 0 for missing, unseen or out-of-vocabulary values."""
    if spec.kind == "hash":
        return (F.when(source.isNull(), F.lit(0))
                .otherwise(F.pmod(F.xxhash64(source.cast("string")), F.lit(spec.size - 1)) + 1)).cast("int")
    if spec.kind == "vocab":
        if not spec.vocab:
            return F.lit(0).cast("int")
        mapping = F.create_map(*[x for k, v in sorted(spec.vocab.items()) for x in (F.lit(k), F.lit(v))])
        return F.coalesce(mapping[source.cast("string")], F.lit(0)).cast("int")
    value = source.cast("double")
    bucket = F.lit(1)
    for boundary in spec.boundaries:  # index = 1 + number of boundaries <= value
        bucket = bucket + F.when(value >= F.lit(boundary), 1).otherwise(0)
    return F.when(value.isNull() | F.isnan(value), F.lit(0)).otherwise(bucket).cast("int")


def encode(df: DataFrame, spec: FeatureSpec, level: str) -> DataFrame:
    sources = {name: source for name, source, _ in EXPOSURE_FIELDS}
    return df.select("*", *[encode_column(spec.fields[n], F.col(sources[n])).alias(spec.fields[n].column)
                            for n in spec.names(level)])


# -- lib/features/build.py ----------------------------------------------------------------------
def split_column(valid_share: float, test_share: float) -> Column:
    """train / valid / test by a hash of the user, so that a user's rows stay on one side."""
    u = F.pmod(F.xxhash64(F.lit("split"), F.col("user_id")), F.lit(10_000)) / F.lit(10_000.0)
    return (F.when(u < test_share, F.lit("test"))
            .when(u < test_share + valid_share, F.lit("valid")).otherwise(F.lit("train")))


def exposure_rows(exposures: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Exposures joined with the days' user and item attributes, for fitting the spec over a window
    (left joins: an unknown id falls into the missing bucket)."""
    return (exposures.drop("ds")
            .join(users.drop("ds"), "user_id", "left")
            .join(F.broadcast(items.drop("ds")), "item_id", "left"))


def labels(exposures: DataFrame, clicks: DataFrame, conversions: DataFrame) -> DataFrame:
    clicked = clicks.select("exposure_id", F.lit(1).alias("click"))
    converted = conversions.select("exposure_id", F.lit(1).alias("conversion"))
    return (exposures.join(clicked, "exposure_id", "left").join(converted, "exposure_id", "left")
            .fillna(0, subset=["click", "conversion"]))


def samples_table(rows: DataFrame, spec: FeatureSpec, ds: str, valid_share: float, test_share: float) -> DataFrame:
    encoded = encode(rows, spec, "exposure")
    return encoded.select(
        "exposure_id", "user_id", "item_id", *spec.columns("exposure"),
        F.col("click").cast("int").alias("click"), F.col("conversion").cast("int").alias("conversion"),
        split_column(valid_share, test_share).alias("split"),
        F.lit(spec.version).alias("feature_spec_version"), F.lit(ds).alias("ds"))


def user_samples_table(user_day: DataFrame, users: DataFrame, spec: FeatureSpec, ds: str, num_responses: int,
                       valid_share: float, test_share: float) -> DataFrame:
    rows = user_day.drop("ds").join(users.drop("ds"), "user_id", "left")
    encoded = encode(rows, spec, "user")
    return encoded.select(
        "user_id", *spec.columns("user"),
        F.col("coupon_treated").cast("int").alias("treated"),
        F.col("coupon_value").cast("double").alias("intensity"),
        F.col("coupon_outcome").cast("int").alias("outcome"),
        F.col("treatment_id").cast("int").alias("treatment_id"),
        *[F.col(f"response_{r}").cast("double").alias(f"response_{r}") for r in range(1, num_responses + 1)],
        *[F.col(f"value_share_{r}").cast("double").alias(f"value_share_{r}") for r in range(1, num_responses + 1)],
        F.col("coupon_randomized").cast("int").alias("rct_coupon"),
        F.col("treatment_randomized").cast("int").alias("rct_treatment"),
        split_column(valid_share, test_share).alias("split"),
        F.lit(spec.version).alias("feature_spec_version"), F.lit(ds).alias("ds"))



# -- lib/features/build.py: fit_and_save_spec's window and build_feature_day (without the spec store) ----
def fit_window_spec(store, cfg, ds: str) -> FeatureSpec:
    from liftlake.lib.days import window_days

    fit_days = [d for d in window_days(ds, cfg.fit_window_days) if d in store.partition_counts("raw.exposures")]
    window = exposure_rows(store.read("raw.exposures", partitions=fit_days).where(F.col("user_id").isNotNull()),
                           store.read("raw.users", partitions=fit_days).dropDuplicates(["user_id"]),
                           store.read("raw.items", partitions=fit_days).dropDuplicates(["item_id"]))
    return fit_spec(window, fit_days, cfg.min_count, cfg.max_vocab, cfg.numeric_buckets)


def feature_day(store, cfg, ds: str, spec: FeatureSpec, num_treatments: int, num_responses: int,
                job: str = "build-features") -> tuple[DataFrame, DataFrame, DataFrame]:
    """(samples, user_samples, quarantine) of the day, planned as the old build_feature_day did."""
    raw = read_raw_day(store, ds, num_treatments, num_responses)
    users = clean_attributes(raw["raw.users"], "raw.users", "user_id", ds, job, cfg.max_id_chars)
    items = clean_attributes(raw["raw.items"], "raw.items", "item_id", ds, job, cfg.max_id_chars)
    exposures = clean_exposures(raw["raw.exposures"], users.good, items.good, ds, job, cfg.max_id_chars)
    clicks = clean_clicks(raw["raw.clicks"], exposures.good, ds, job)
    conversions = clean_conversions(raw["raw.conversions"], clicks.good, ds, job)
    user_day = clean_user_day(raw["raw.treatments"], raw["raw.responses"], users.good, num_treatments,
                              num_responses, ds, job)
    rows = labels(exposures.good, clicks.good, conversions.good)
    samples = samples_table(rows, spec, ds, cfg.valid_share, cfg.test_share)
    user_samples = user_samples_table(user_day.good, users.good, spec, ds, num_responses,
                                      cfg.valid_share, cfg.test_share)
    quarantine = (users.rejected.unionByName(items.rejected).unionByName(exposures.rejected)
                  .unionByName(clicks.rejected).unionByName(conversions.rejected).unionByName(user_day.rejected))
    return samples, user_samples, quarantine
