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

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from liftlake.lib.runner import InputError

QUARANTINE_SCHEMA = T.StructType([
    T.StructField("source_table", T.StringType(), False),
    T.StructField("rule", T.StringType(), False),
    T.StructField("row_key", T.StringType(), True),
    T.StructField("row_json", T.StringType(), True),
    T.StructField("job", T.StringType(), False),
    T.StructField("ds", T.StringType(), False),
])

# Fields of the encoding: (name, source column, kind). "vocab": string vocabulary; "hash": id hashed
# into buckets (ids are too many for a vocabulary and new ones appear every day); "bucket": numeric
# quantile buckets.
USER_FIELDS = [
    ("user_id", "user_id", "hash"),
    ("u_age", "u_age", "bucket"),
    ("u_gender", "u_gender", "vocab"),
    ("u_city", "u_city", "vocab"),
    ("u_segment", "u_segment", "vocab"),
    ("u_activity", "u_activity", "bucket"),
    ("u_income", "u_income", "bucket"),
]
EXPOSURE_FIELDS = USER_FIELDS + [
    ("item_id", "item_id", "hash"),
    ("i_category", "i_category", "vocab"),
    ("i_brand", "i_brand", "vocab"),
    ("i_price", "i_price", "bucket"),
    ("device", "device", "vocab"),
    ("hour", "hour", "vocab"),
    ("position", "position", "vocab"),
]
HASH_BUCKETS = {"user_id": 4096, "item_id": 2048}


@dataclass
class FieldSpec:
    name: str
    kind: str                      # vocab | hash | bucket
    size: int                      # vocabulary size including the 0 bucket
    vocab: dict[str, int] = field(default_factory=dict)
    boundaries: list[float] = field(default_factory=list)

    @property
    def column(self) -> str:
        return f"f_{self.name}"


@dataclass
class FeatureSpec:
    version: str
    fitted_on: list[str]
    fields: dict[str, FieldSpec]
    exposure_fields: list[str]
    user_fields: list[str]

    def field_dims(self, level: str) -> list[int]:
        return [self.fields[n].size for n in self.names(level)]

    def names(self, level: str) -> list[str]:
        if level not in ("exposure", "user"):
            raise ValueError(f"feature level {level!r} is not exposure | user")
        return self.exposure_fields if level == "exposure" else self.user_fields

    def columns(self, level: str) -> list[str]:
        return [self.fields[n].column for n in self.names(level)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSpec":
        raw = json.loads(text)
        raw["fields"] = {k: FieldSpec(**v) for k, v in raw["fields"].items()}
        return cls(**raw)


# -- the spec store ---------------------------------------------------------------------------
def spec_dir(warehouse: str) -> str:
    return os.path.join(warehouse, "_features", "spec")


def save_spec(warehouse: str, spec: FeatureSpec) -> str:
    """Write the spec (content-addressed, so re-fitting the same window is the same version)."""
    folder = spec_dir(warehouse)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{spec.version}.json")
    if not os.path.exists(path):
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(spec.to_json())
        os.replace(tmp, path)
    pointer = os.path.join(folder, "CURRENT")
    tmp = f"{pointer}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(spec.version)
    os.replace(tmp, pointer)
    return path


@contextlib.contextmanager
def spec_fit_lock(warehouse: str):
    """Held while a job loads-or-fits the CURRENT spec: the first days of a backfill start at once
    on a fresh warehouse, and each fitting its own spec would encode neighbouring days differently.
    An flock on the warehouse's local folder (the embedded default); the OS drops it when the
    holder dies, so a killed job never leaves it taken."""
    folder = spec_dir(warehouse)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".fit.lock"), "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_spec(warehouse: str, version: str | None = None) -> FeatureSpec | None:
    folder = spec_dir(warehouse)
    if version is None:
        pointer = os.path.join(folder, "CURRENT")
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as fh:
            version = fh.read().strip()
    path = os.path.join(folder, f"{version}.json")
    if not os.path.exists(path):
        raise InputError(f"feature spec {version} not found under {folder}")
    with open(path, encoding="utf-8") as fh:
        return FeatureSpec.from_json(fh.read())


def require_day_spec(rows: DataFrame, table: str, ds: str, spec_version: str, user: str) -> None:
    """Refuse a day of ``table`` encoded with another spec than the one ``user`` (a model, the
    ESCIM labeler) was built on: its ids would index other vocabulary entries, silently."""
    versions = sorted(r[0] for r in rows.select("feature_spec_version").distinct().limit(3).collect())
    if versions != [spec_version]:
        raise InputError(f"table {table}: ds={ds} is encoded with feature spec {versions}, {user} with "
                         f"{spec_version} (rule: a day is read with the spec it was encoded with; rebuild the "
                         f"day's features with that spec, or retrain)")


def spec_versions_by_day(rows: DataFrame) -> dict[str, set[str]]:
    """{ds: feature spec versions its rows carry}: one row per day and spec reaches the driver."""
    found: dict[str, set[str]] = {}
    for r in rows.select("ds", "feature_spec_version").distinct().collect():
        found.setdefault(r[0], set()).add(r[1])
    return found


# -- checks of the raw input ---------------------------------------------------------------------
def check_raw_schema(table: str, df: DataFrame, expected: T.StructType) -> None:
    """Refuse missing columns and wrong types (naming them); extra columns are ignored but named."""
    got = {f.name: f.dataType for f in df.schema.fields}
    missing = [f.name for f in expected.fields if f.name not in got]
    if missing:
        raise InputError(f"table {table}: missing column(s) {missing} (rule: the raw schema of the simulator "
                         f"contract, lib/simulator.RAW_SCHEMAS)")
    wrong = [f"{f.name} is {got[f.name].simpleString()}, expected {f.dataType.simpleString()}"
             for f in expected.fields if got[f.name] != f.dataType]
    if wrong:
        raise InputError(f"table {table}: wrong type: {'; '.join(wrong)}")


def require_partition(store, table: str, ds: str) -> None:
    if not store.exists(table):
        raise InputError(f"table {table} does not exist (run `liftlake simulate` or load the raw logs first)")
    counts = store.partition_counts(table)
    if ds not in counts:
        raise InputError(f"table {table}: partition ds={ds} is missing (rule: every raw table needs the day)")


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


def split_tagged(tagged: DataFrame, table: str, key: str, job: str, ds: str, helper_cols: Sequence[str] = ()) -> Cleaned:
    """Rows without a rule, and the quarantine rows of the others (the raw row as JSON)."""
    good = tagged.where(F.col("_rule").isNull()).drop("_rule", *helper_cols)
    bad = tagged.where(F.col("_rule").isNotNull()).drop(*helper_cols)
    payload = [c for c in bad.columns if c != "_rule"]
    rejected = bad.select(
        F.lit(table).alias("source_table"), F.col("_rule").alias("rule"),
        F.col(key).cast("string").alias("row_key"),
        F.to_json(F.struct(*[F.col(c) for c in payload])).alias("row_json"),
        F.lit(job).alias("job"), F.lit(ds).alias("ds"))
    return Cleaned(good, rejected)


def exposure_rules(ds: str) -> Column:
    """Null ids and timestamps outside the day."""
    lo, hi = _day_bounds(ds)
    return (F.when(F.col("exposure_id").isNull() | F.col("user_id").isNull() | F.col("item_id").isNull(), "null_id")
            .when(F.col("ts").isNull() | (F.col("ts") < lo) | (F.col("ts") >= hi), "ts_outside_day"))


def clean_exposures(exposures: DataFrame, ds: str, job: str) -> Cleaned:
    tagged = tag_rules(exposures, exposure_rules(ds), "exposure_id", ["ts", "user_id"], "duplicate_exposure_id")
    return split_tagged(tagged, "raw.exposures", "exposure_id", job, ds)


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


def clean_user_day(treatments: DataFrame, responses: DataFrame, num_treatments: int, num_responses: int,
                   ds: str, job: str) -> Cleaned:
    """One row per user-day from treatments + responses; rows that break a rule are rejected."""
    resp_cols = [f"response_{r}" for r in range(1, num_responses + 1)]
    share_cols = [f"value_share_{r}" for r in range(1, num_responses + 1)]
    joined = treatments.join(responses.drop("ds"), "user_id", "left")
    bad_response = F.lit(False)
    for c in resp_cols:
        bad_response = bad_response | F.col(c).isNull() | F.isnan(F.col(c)) | (F.col(c) < 0)
    bad_share = F.lit(False)
    for c in share_cols:
        bad_share = bad_share | F.col(c).isNull() | F.isnan(F.col(c)) | (F.col(c) < 0) | (F.col(c) > 1)
    value = F.col("coupon_value")
    rule = (F.when(F.col("user_id").isNull(), "null_id")
            .when(F.col("coupon_outcome").isNull(), "missing_response_row")
            .when(~F.col("coupon_treated").isin(0, 1), "coupon_treated_not_binary")
            .when((F.col("coupon_treated") == 1) & (value.isNull() | F.isnan(value) | (value <= 0)),
                  "bad_coupon_value_on_treated_row")
            .when((F.col("coupon_treated") == 0) & (value != 0), "coupon_value_on_untreated_row")
            .when(F.col("treatment_id").isNull() | (F.col("treatment_id") < 0)
                  | (F.col("treatment_id") > num_treatments), "unknown_treatment_id")
            .when(bad_response, "response_nan_or_negative")
            .when(bad_share, "value_share_outside_0_1"))
    tagged = tag_rules(joined, rule, "user_id", ["coupon_value", "treatment_id"], "duplicate_user_day")
    return split_tagged(tagged, "raw.treatments", "user_id", job, ds)


# -- fitting and applying the encoding ---------------------------------------------------------------
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
            clean = exposure_rows.where(F.col(source).isNotNull() & ~F.isnan(F.col(source).cast("double")))
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


def split_column(valid_share: float, test_share: float) -> Column:
    """train / valid / test by a hash of the user, so that a user's rows stay on one side."""
    u = F.pmod(F.xxhash64(F.lit("split"), F.col("user_id")), F.lit(10_000)) / F.lit(10_000.0)
    return (F.when(u < test_share, F.lit("test"))
            .when(u < test_share + valid_share, F.lit("valid")).otherwise(F.lit("train")))


def exposure_rows(exposures: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """Exposures joined with the day's user and item attributes (left joins: an unknown user or
    item keeps its exposure, its attributes fall into the missing bucket)."""
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


def window_days(ds: str, n: int) -> list[str]:
    end = dt.date.fromisoformat(ds)
    return [(end - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


RAW_TABLES = ("raw.exposures", "raw.clicks", "raw.conversions", "raw.users", "raw.items",
              "raw.treatments", "raw.responses")


def read_raw_day(store, ds: str) -> dict[str, DataFrame]:
    """The day's raw partitions, each checked against the simulator's schema contract."""
    from liftlake.lib.simulator import RAW_SCHEMAS

    out = {}
    for table in RAW_TABLES:
        require_partition(store, table, ds)
        df = store.read(table, partitions=[ds])
        check_raw_schema(table, df, RAW_SCHEMAS[table])
        out[table] = df.select(*[f.name for f in RAW_SCHEMAS[table].fields])
    return out


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


def build_feature_day(store, warehouse: str, cfg, ds: str, num_treatments: int, num_responses: int,
                      job: str = "build-features", refit: bool = False, log=print) -> FeatureDay:
    """Plan the day's feature tables (lazy DataFrames) and fit or load the feature spec."""
    raw = read_raw_day(store, ds)
    exposures = clean_exposures(raw["raw.exposures"], ds, job)
    clicks = clean_clicks(raw["raw.clicks"], exposures.good, ds, job)
    conversions = clean_conversions(raw["raw.conversions"], clicks.good, ds, job)
    user_day = clean_user_day(raw["raw.treatments"], raw["raw.responses"], num_treatments, num_responses, ds, job)

    rows = exposure_rows(labels(exposures.good, clicks.good, conversions.good), raw["raw.users"], raw["raw.items"])
    spec = None if refit else load_spec(warehouse)
    if spec is None:
        with spec_fit_lock(warehouse):
            spec = None if refit else load_spec(warehouse)  # fitted by the job we waited for
            if spec is None:
                spec = fit_and_save_spec(store, warehouse, cfg, ds, log)
    samples = samples_table(rows, spec, ds, cfg.valid_share, cfg.test_share)
    user_samples = user_samples_table(user_day.good, raw["raw.users"], spec, ds, num_responses,
                                      cfg.valid_share, cfg.test_share)
    quarantine = (exposures.rejected.unionByName(clicks.rejected).unionByName(conversions.rejected)
                  .unionByName(user_day.rejected))
    return FeatureDay(samples, user_samples, quarantine, spec)
