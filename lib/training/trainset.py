"""The driver's side of training: pin table versions, materialize the rows ranks read.

Training reads a snapshot, never a moving table: the versions of ``features.*`` (and of the
ESCIM label table) are pinned when the run starts and recorded in the artifact, so the same run can
be repeated after newer versions exist. The rows are written once as Parquet under
``<warehouse>/_train_cache/<key>/{train,valid,test}`` in files of near-equal size with one row
group each (Petastorm shards by row group), keyed by everything that decides their content.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from liftlake.lib.artifacts.publish import new_staging, publish_as


# How a window's rows are split into train / valid / test (train.split_by):
# "user": the rows' own split column (a hash of the user, build-features), every day alike;
# "day": chronological, as the CVR papers split their logs: the window's last day is the test set, the
# earlier days keep their user-hash valid rows and train on the rest (their test rows included).
SPLIT_BY = ("user", "day")


def window_split(days: list[str], split_by: str) -> Column:
    """The split of each row of the window ``days`` under ``split_by`` (the one rule training and
    evaluation both read)."""
    if split_by == "user":
        return F.col("split")
    if split_by != "day":
        raise ValueError(f"split_by {split_by!r}: not one of {', '.join(SPLIT_BY)}")
    return (F.when(F.col("ds") == F.lit(max(days)), F.lit("test"))
            .when(F.col("split") == F.lit("valid"), F.lit("valid")).otherwise(F.lit("train")))


@dataclass
class TrainSet:
    key: str
    table_versions: dict[str, int]
    days: list[str]
    files: dict[str, list[str]]            # split -> sorted parquet files
    rowgroup_rows: dict[str, list[int]]    # split -> rows per row group, in order
    rows: dict[str, int]
    split_by: str = "user"


def _row_groups(files: list[str]) -> list[int]:
    out: list[int] = []
    for f in files:
        meta = pq.read_metadata(f)
        out.extend(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return out


def top_share_label(df: DataFrame, rate: float, column: str) -> DataFrame:
    """``df`` (with click and pcvr_cf) plus ``column``: 1 for the ``rate`` share of its non-clicked
    rows with the highest pcvr_cf, 0 elsewhere (clicked rows included). The cut-off is one
    approximate quantile of the non-clicked rows; rows strictly above it are labelled, so k rows
    of n get k labels when their scores are distinct."""
    quantile = df.where(F.col("click") == 0).approxQuantile("pcvr_cf", [1.0 - rate], 1e-4) if rate > 0 else []
    cutoff = quantile[0] if quantile else float("inf")
    return df.withColumn(column, ((F.col("click") == 0) & (F.col("pcvr_cf") > F.lit(cutoff))).cast("int"))


def training_frame(store, level: str, days: list[str], versions: dict[str, int], columns: list[str],
                   cf_label_column: str | None = None, cf_label_rate: float | None = None,
                   split_by: str = "user") -> DataFrame:
    """The rows of the window at the pinned versions, with the columns a rank needs and their split
    (``window_split``)."""
    table = "features.samples" if level == "exposure" else "features.user_samples"
    df = store.read(table, version=versions[table], partitions=days).withColumn("split", window_split(days, split_by))
    if cf_label_column:
        labels = store.read("labels.escim_counterfactual", version=versions["labels.escim_counterfactual"],
                            partitions=days)
        if cf_label_rate is None:
            df = df.join(labels.select("exposure_id", F.col(cf_label_column).alias("_cf")), "exposure_id", "left")
        else:
            # a row without pcvr_cf keeps a null label, counted as missing below
            df = top_share_label(df.join(labels.select("exposure_id", "pcvr_cf"), "exposure_id", "left"),
                                 cf_label_rate, "_cf")
        # The factual label is used on clicked rows; a non-clicked row without a label is a gap
        # the label job must fill, so it is counted by the caller (never silently set to 0).
        df = df.withColumn("cf_label", F.when(F.col("click") == 1, F.lit(0.0)).otherwise(F.col("_cf")).cast("double"))
        columns = [*columns, "cf_label"]
    return df.select(*columns, "split")


def materialize(store, warehouse: str, level: str, days: list[str], versions: dict[str, int], columns: list[str],
                files_per_split: int, cf_label_column: str | None = None, cf_label_rate: float | None = None,
                split_by: str = "user", log=print) -> TrainSet:
    # "layout" changes whenever what a cached set holds changes, so an old cache is never read as new
    key_src = json.dumps({"level": level, "days": days, "versions": versions, "columns": columns,
                          "files": files_per_split, "cf": cf_label_column, "layout": 3}
                         | ({"cf_rate": cf_label_rate} if cf_label_rate is not None else {})
                         | ({"split_by": split_by} if split_by != "user" else {}), sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = os.path.join(warehouse, "_train_cache")
    root = os.path.join(cache, key)
    done = os.path.join(root, "_DONE.json")
    if not os.path.exists(done):
        df = training_frame(store, level, days, versions, columns, cf_label_column, cf_label_rate, split_by)
        if cf_label_column:
            missing = df.where(F.col("cf_label").isNull()).count()
            if missing:
                from liftlake.lib.cli.runner import InputError

                raise InputError(f"table labels.escim_counterfactual: {missing} non-clicked row(s) of "
                                 f"features.samples on {days[0]}..{days[-1]} have no counterfactual label "
                                 f"(rule: run `liftlake escim-labels` for those days first)")
        df = df.withColumn("row_id", F.monotonically_increasing_id())
        # written into a folder of this job's own and published under its key in one rename: two
        # trainings of the same window at once each write their own copy and the first one published
        # is the one both read (a shared folder written twice lost files under the other reader)
        staging = new_staging(cache)
        for split in ("train", "valid", "test"):
            part = df.where(F.col("split") == split).drop("split")
            # round-robin repartition: files differ by at most one row; one row group per file
            (part.repartition(files_per_split)
             .write.mode("error").option("parquet.block.size", 1 << 30).parquet(os.path.join(staging, split)))
        # drop empty files: a row group of 0 rows would give a rank nothing to read
        files = {s: sorted(f"{s}/{f}" for f in os.listdir(os.path.join(staging, s)) if f.endswith(".parquet")
                           and pq.read_metadata(os.path.join(staging, s, f)).num_rows > 0)
                 for s in ("train", "valid", "test")}
        rowgroups = {s: _row_groups([os.path.join(staging, f) for f in fs]) for s, fs in files.items()}
        with open(os.path.join(staging, "_DONE.json"), "w", encoding="utf-8") as fh:
            json.dump({"files": files, "rowgroups": rowgroups}, fh)
        if publish_as(cache, key, staging):
            log(f"materialized training rows {key}: " + ", ".join(f"{s}={sum(r)}" for s, r in rowgroups.items()))
    os.utime(done)  # last use: housekeeping removes caches unused for housekeeping.retention_hours
    with open(done, encoding="utf-8") as fh:
        saved = json.load(fh)
    saved["files"] = {s: [os.path.join(root, f) for f in fs] for s, fs in saved["files"].items()}
    return TrainSet(key, versions, days, saved["files"], saved["rowgroups"],
                    {s: sum(r) for s, r in saved["rowgroups"].items()}, split_by)
