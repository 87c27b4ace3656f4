"""Raw logs -> feature tables, as small DataFrame -> DataFrame steps.

* ``features.samples``: one row per exposure (encoded fields, click, conversion, split).
* ``features.user_samples``: one row per user-day (encoded user fields, coupon treatment, outcome,
  strategy id, continuous responses, value shares, the randomized flags, split).
* ``ops.quarantine``: every raw row that breaks a rule, with the rule; never dropped silently.

The encoding (vocabularies for strings, hashing for ids, quantile buckets for numbers; index 0 is the
out-of-vocabulary / missing bucket) is a versioned ``FeatureSpec`` fitted on a window of days and
saved under ``<warehouse>/_features/spec/``; scoring re-uses the spec a model was trained with.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from liftlake.lib.artifacts.feature_specs import load_spec, save_spec, spec_fit_lock
from liftlake.lib.days import window_days
from liftlake.lib.features.cleaning import (clean_attributes, clean_clicks, clean_conversions, clean_exposures,
                                            clean_user_day)
from liftlake.lib.features.raw_logs import read_raw_day
from liftlake.lib.features.spec import (EXPOSURE_OWN_FIELDS, ITEM_FIELDS, USER_FIELDS, FeatureSpec, encode_fields,
                                        fit_spec)


def split_column(valid_share: float, test_share: float) -> Column:
    """train / valid / test by a hash of the user, so that a user's rows stay on one side."""
    u = F.pmod(F.xxhash64(F.lit("split"), F.col("user_id")), F.lit(10_000)) / F.lit(10_000.0)
    return (F.when(u < test_share, F.lit("test"))
            .when(u < test_share + valid_share, F.lit("valid")).otherwise(F.lit("train")))


def exposure_rows(exposures: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Exposures joined with their users' and items' rows (one per id; the items broadcast): the raw
    attributes when the spec is fitted over a window, the encoded fields when a day's samples are
    built (left joins: an unknown id falls into the missing bucket)."""
    return (exposures.drop("ds")
            .join(users.drop("ds"), "user_id", "left")
            .join(F.broadcast(items.drop("ds")), "item_id", "left"))


def labels(exposures: DataFrame, clicks: DataFrame, conversions: DataFrame) -> DataFrame:
    clicked = clicks.select("exposure_id", F.lit(1).alias("click"))
    converted = conversions.select("exposure_id", F.lit(1).alias("conversion"))
    return (exposures.join(clicked, "exposure_id", "left").join(converted, "exposure_id", "left")
            .fillna(0, subset=["click", "conversion"]))


def encoded_users(users: DataFrame, spec: FeatureSpec, valid_share: float, test_share: float) -> DataFrame:
    """The day's clean users with their encoded fields and split: encoded once per user here, and
    joined to the exposures and the user-days (not re-encoded per exposure)."""
    return encode_fields(users.drop("ds"), spec, [n for n, _, _ in USER_FIELDS]).select(
        "user_id", *[spec.fields[n].column for n, _, _ in USER_FIELDS],
        split_column(valid_share, test_share).alias("split"))


def encoded_items(items: DataFrame, spec: FeatureSpec) -> DataFrame:
    """The day's clean items with their encoded fields (small: broadcast to the exposures)."""
    return encode_fields(items.drop("ds"), spec, [n for n, _, _ in ITEM_FIELDS]).select(
        "item_id", *[spec.fields[n].column for n, _, _ in ITEM_FIELDS])


def samples_table(rows: DataFrame, spec: FeatureSpec, ds: str) -> DataFrame:
    """``rows``: labelled exposures carrying their user's and item's encoded fields and split
    (``encoded_users`` / ``encoded_items``); the exposure's own fields are encoded here."""
    encoded = encode_fields(rows, spec, [n for n, _, _ in EXPOSURE_OWN_FIELDS])
    return encoded.select(
        "exposure_id", "user_id", "item_id", *spec.columns("exposure"),
        F.col("click").cast("int").alias("click"), F.col("conversion").cast("int").alias("conversion"),
        "split", F.lit(spec.version).alias("feature_spec_version"), F.lit(ds).alias("ds"))


def user_samples_table(user_day: DataFrame, users: DataFrame, spec: FeatureSpec, ds: str,
                       num_responses: int) -> DataFrame:
    """``users``: ``encoded_users`` of the day."""
    rows = user_day.drop("ds").join(users, "user_id", "left")
    return rows.select(
        "user_id", *spec.columns("user"),
        F.col("coupon_treated").cast("int").alias("treated"),
        F.col("coupon_value").cast("double").alias("intensity"),
        F.col("coupon_outcome").cast("int").alias("outcome"),
        F.col("treatment_id").cast("int").alias("treatment_id"),
        *[F.col(f"response_{r}").cast("double").alias(f"response_{r}") for r in range(1, num_responses + 1)],
        *[F.col(f"value_share_{r}").cast("double").alias(f"value_share_{r}") for r in range(1, num_responses + 1)],
        F.col("coupon_randomized").cast("int").alias("rct_coupon"),
        F.col("treatment_randomized").cast("int").alias("rct_treatment"),
        "split", F.lit(spec.version).alias("feature_spec_version"), F.lit(ds).alias("ds"))


SAMPLES_COMMENTS = {
    "exposure_id": "exposure id from raw.exposures",
    "click": "1 if the exposure was clicked",
    "conversion": "1 if the clicked exposure converted (always 0 without a click)",
    "split": "train / valid / test by a hash of user_id",
    "feature_spec_version": "the FeatureSpec that encoded the f_* columns (<warehouse>/_features/spec)",
    "ds": "day of the exposure (partition)",
}
USER_SAMPLES_COMMENTS = {
    "treated": "1 if the user was given a coupon that day (w)",
    "intensity": "coupon face value t (0 when untreated)",
    "outcome": "binary response to the coupon",
    "treatment_id": "strategy the user was assigned: 0 control, 1..K",
    "rct_coupon": "1 on the randomized coupon slice (unbiased evaluation)",
    "rct_treatment": "1 on the randomized strategy slice",
    "ds": "day (partition)",
}


@dataclass
class FeatureDay:
    samples: DataFrame
    user_samples: DataFrame
    quarantine: DataFrame
    spec: FeatureSpec
    cached: list[DataFrame] = field(default_factory=list)  # the tagged raw tables; release() when written

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()
        self.cached.clear()


def fit_and_save_spec(store, warehouse: str, cfg, ds: str, log=print) -> FeatureSpec:
    fit_days = [d for d in window_days(ds, cfg.fit_window_days) if d in store.partition_counts("raw.exposures")]
    log(f"fitting the feature spec on {fit_days[0]}..{fit_days[-1]} ({len(fit_days)} day(s))")
    window = exposure_rows(store.read("raw.exposures", partitions=fit_days).where(F.col("user_id").isNotNull()),
                           store.read("raw.users", partitions=fit_days).dropDuplicates(["user_id"]),
                           store.read("raw.items", partitions=fit_days).dropDuplicates(["item_id"]))
    spec = fit_spec(window, fit_days, cfg.min_count, cfg.max_vocab, cfg.numeric_buckets)
    save_spec(warehouse, spec)
    log(f"feature spec {spec.version}: exposure field dims {spec.field_dims('exposure')}")
    return spec


def load_or_fit_spec(store, warehouse: str, cfg, ds: str, refit: bool = False, log=print) -> FeatureSpec:
    spec = None if refit else load_spec(warehouse)
    if spec is None:
        with spec_fit_lock(warehouse):
            spec = None if refit else load_spec(warehouse)  # fitted by the job we waited for
            if spec is None:
                spec = fit_and_save_spec(store, warehouse, cfg, ds, log)
    return spec


def build_feature_day(store, warehouse: str, cfg, ds: str, num_treatments: int, num_responses: int,
                      job: str = "build-features", refit: bool = False, log=print) -> FeatureDay:
    """Plan the day's feature tables (lazy DataFrames) and fit or load the feature spec.

    Each raw table is read, joined and tagged with its rules once and cached (``FeatureDay.cached``):
    its good rows feed the next table's rules and the feature tables, its rejected rows the
    quarantine, all from that one pass. The exposures are tagged and cached with their own columns;
    the users' and items' fields are encoded on their own tables (one row per id) and joined to the
    good exposures when the samples are written, so the exposure stage only encodes its own three
    fields and its generated code stays small (under HotSpot's 8,000-byte JIT limit)."""
    raw = read_raw_day(store, ds, num_treatments, num_responses)
    spec = load_or_fit_spec(store, warehouse, cfg, ds, refit, log)
    users = clean_attributes(raw["raw.users"], "raw.users", "user_id", ds, job, cfg.max_id_chars, persist=True)
    items = clean_attributes(raw["raw.items"], "raw.items", "item_id", ds, job, cfg.max_id_chars, persist=True)
    user_codes = encoded_users(users.good, spec, cfg.valid_share, cfg.test_share)
    item_codes = encoded_items(items.good, spec)
    exposures = clean_exposures(raw["raw.exposures"], users.good, items.good, ds, job, cfg.max_id_chars,
                                persist=True)
    clicks = clean_clicks(raw["raw.clicks"], exposures.good, ds, job, persist=True)
    conversions = clean_conversions(raw["raw.conversions"], clicks.good, ds, job, persist=True)
    user_day = clean_user_day(raw["raw.treatments"], raw["raw.responses"], users.good, num_treatments,
                              num_responses, ds, job, persist=True)

    rows = exposure_rows(labels(exposures.good, clicks.good, conversions.good), user_codes, item_codes)
    samples = samples_table(rows, spec, ds)
    user_samples = user_samples_table(user_day.good, user_codes, spec, ds, num_responses)
    parts = [users, items, exposures, clicks, conversions, user_day]
    quarantine = parts[0].rejected
    for part in parts[1:]:
        quarantine = quarantine.unionByName(part.rejected)
    return FeatureDay(samples, user_samples, quarantine, spec, [p.tagged for p in parts if p.tagged is not None])
