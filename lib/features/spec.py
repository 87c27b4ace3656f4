"""The feature spec: vocabularies and numeric buckets fitted on a window of days, content-addressed, and the
encoding of raw columns into the integer fields the models read."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from liftlake.lib.cli.runner import InputError
from liftlake.lib.storage.store import sql_string

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


# The item's own fields (encoded on the day's items table, joined to the exposures) and the exposure's
# own (encoded on the exposure rows).
ITEM_FIELDS = [
    ("item_id", "item_id", "hash"),
    ("i_category", "i_category", "vocab"),
    ("i_brand", "i_brand", "vocab"),
    ("i_price", "i_price", "bucket"),
]
EXPOSURE_OWN_FIELDS = [
    ("device", "device", "vocab"),
    ("hour", "hour", "vocab"),
    ("position", "position", "vocab"),
]
EXPOSURE_FIELDS = USER_FIELDS + ITEM_FIELDS + EXPOSURE_OWN_FIELDS
# The inputs of the user-level (uplift) models: the user's attributes without its id. A user-day row
# shows one treatment's outcome, so an id embedding can only learn that user's observed level, which
# is the effect confounded with the baseline; and the split holds out whole users, so a test user's id
# bucket carries ~10 unrelated train users' levels. Measured on a 40k-user multi-treatment world: with
# the id HUM's Spearman with the true effects was 0.24-0.50 (RMSE at or above a constant's), without
# it 0.52-0.88, level with a LightGBM S-learner on the same six fields.
USER_LEVEL_FIELDS = [name for name, _, _ in USER_FIELDS if name != "user_id"]


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


def require_day_spec(store, table: str, ds: str, spec_version: str, user: str) -> None:
    """Refuse a day of ``table`` encoded with another spec than the one ``user`` (a model, the
    ESCIM labeler) was built on: its ids would index other vocabulary entries, silently. The Delta
    log's file statistics answer when the day holds one version (no rows read; a scan of the day
    was 15 % of a scoring job at 1M exposures); the day's rows are read when they cannot."""
    if store.single_value_from_stats(table, "feature_spec_version", ds) == spec_version:
        return
    rows = store.read(table, partitions=[ds])
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


# -- fitting and applying the encoding ---------------------------------------------------------------
def fit_spec(exposure_rows: DataFrame, days: Sequence[str], min_count: int, max_vocab: int,
             numeric_buckets: int) -> FeatureSpec:
    """Fit vocabularies and quantile boundaries on the (cleaned, joined) exposure rows of ``days``.

    The rows' source columns are cached once; the vocabularies are one aggregation over them (every
    string field's value counts together) and the boundaries one multi-column approxQuantile, so the
    window's join runs once, not once per field. Only aggregates reach the driver: at most
    ``max_vocab`` values per string field and ``numeric_buckets`` boundaries per numeric field.
    """
    vocab_fields = [(name, source) for name, source, kind in EXPOSURE_FIELDS if kind == "vocab"]
    bucket_fields = [(name, source) for name, source, kind in EXPOSURE_FIELDS if kind == "bucket"]
    sources = list(dict.fromkeys(source for _, source in vocab_fields + bucket_fields))
    window = exposure_rows.select(*sources).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        vocabs = _fit_vocabularies(window, vocab_fields, min_count, max_vocab)
        boundaries = _fit_boundaries(window, bucket_fields, numeric_buckets)
    finally:
        window.unpersist()
    fields: dict[str, FieldSpec] = {}
    for name, _, kind in EXPOSURE_FIELDS:
        if kind == "hash":
            fields[name] = FieldSpec(name, kind, HASH_BUCKETS[name] + 1)
        elif kind == "vocab":
            fields[name] = FieldSpec(name, kind, len(vocabs[name]) + 1, vocab=vocabs[name])
        else:
            fields[name] = FieldSpec(name, kind, len(boundaries[name]) + 2, boundaries=boundaries[name])
    exposure_fields, user_fields = [n for n, _, _ in EXPOSURE_FIELDS], list(USER_LEVEL_FIELDS)
    # the version names the whole encoding: the fields and which of them each level's models read
    body = json.dumps({"fields": {k: asdict(v) for k, v in fields.items()}, "exposure_fields": exposure_fields,
                       "user_fields": user_fields}, sort_keys=True)
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    return FeatureSpec(version=version, fitted_on=list(days), fields=fields, exposure_fields=exposure_fields,
                       user_fields=user_fields)


def _fit_vocabularies(rows: DataFrame, fields: Sequence[tuple[str, str]], min_count: int,
                      max_vocab: int) -> dict[str, dict[str, int]]:
    """{field: {value: index}}: per field the values seen at least ``min_count`` times, the
    ``max_vocab`` most frequent (ties by value), numbered from 1. One shuffle for every field."""
    if not fields:
        return {}
    pairs = F.explode(F.array(*[F.struct(F.lit(name).alias("field"), F.col(source).cast("string").alias("v"))
                                for name, source in fields]))
    rank = F.row_number().over(Window.partitionBy("field").orderBy(F.desc("count"), F.asc("v")))
    top = (rows.select(pairs.alias("p")).select("p.field", "p.v").where(F.col("v").isNotNull())
           .groupBy("field", "v").count().where(F.col("count") >= min_count)
           .withColumn("rank", rank).where(F.col("rank") <= max_vocab)
           .select("field", "v", "rank").collect())
    vocabs: dict[str, dict[str, int]] = {name: {} for name, _ in fields}
    for row in sorted(top, key=lambda r: (r["field"], r["rank"])):
        vocabs[row["field"]][row["v"]] = int(row["rank"])
    return vocabs


def _fit_boundaries(rows: DataFrame, fields: Sequence[tuple[str, str]],
                    numeric_buckets: int) -> dict[str, list[float]]:
    """{field: sorted distinct approximate quantiles at 1/B .. (B-1)/B} of its finite values (null,
    NaN and infinities left out), every field in one approxQuantile pass."""
    probs = [i / numeric_buckets for i in range(1, numeric_buckets)]
    if not fields or not probs:
        return {name: [] for name, _ in fields}
    finite = []
    for i, (_, source) in enumerate(fields):
        value = F.col(source).cast("double")
        ok = value.isNotNull() & ~F.isnan(value) & ~value.isin(float("inf"), float("-inf"))
        finite.append(F.when(ok, value).alias(f"_q{i}"))
    qs = rows.select(*finite).approxQuantile([f"_q{i}" for i in range(len(fields))], probs, 0.001)
    return {name: sorted(set(float(q) for q in col_qs)) for (name, _), col_qs in zip(fields, qs)}


def vocabulary_map(vocab: dict[str, int]) -> Column:
    """The vocabulary as one literal map expression, parsed by Spark from one SQL string: building it
    from a ``lit`` per key and value cost two Py4J round trips an entry (most of a day's planning time)."""
    return F.expr("map(" + ", ".join(f"{sql_string(k)}, {int(v)}" for k, v in sorted(vocab.items())) + ")")


def encode_column(spec: FieldSpec, source: Column) -> Column:
    """One field's index in [0, size): 0 for missing, unseen or out-of-vocabulary values."""
    if spec.kind == "hash":
        return (F.when(source.isNull(), F.lit(0))
                .otherwise(F.pmod(F.xxhash64(source.cast("string")), F.lit(spec.size - 1)) + 1)).cast("int")
    if spec.kind == "vocab":
        if not spec.vocab:
            return F.lit(0).cast("int")
        return F.coalesce(vocabulary_map(spec.vocab)[source.cast("string")], F.lit(0)).cast("int")
    value = source.cast("double")
    bucket = F.lit(1)
    for boundary in spec.boundaries:  # index = 1 + number of boundaries <= value
        bucket = bucket + F.when(value >= F.lit(boundary), 1).otherwise(0)
    return F.when(value.isNull() | F.isnan(value), F.lit(0)).otherwise(bucket).cast("int")


def encode(df: DataFrame, spec: FeatureSpec, level: str) -> DataFrame:
    return encode_fields(df, spec, spec.names(level))


def encode_fields(df: DataFrame, spec: FeatureSpec, names: Sequence[str]) -> DataFrame:
    """``df`` with the ``f_*`` columns of the fields ``names`` (from their source columns) added."""
    sources = {name: source for name, source, _ in EXPOSURE_FIELDS}
    return df.select("*", *[encode_column(spec.fields[n], F.col(sources[n])).alias(spec.fields[n].column)
                            for n in names])
